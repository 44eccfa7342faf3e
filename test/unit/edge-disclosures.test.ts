/**
 * edge/checks/disclosures.ts, the pure part: judging one hop's disclosure against the attempt it
 * served (chunks, sides, the hop's own attested commitments) and choosing what the checker is
 * sent (one copy of each boundary, within the body budget, and the withholders).
 */
import { describe, expect, it } from 'vitest';
import { assembleDisclosures, judgeDisclosure, type HopDisclosureResult } from '../../edge/checks/disclosures.js';
import type { JobAttemptRecord } from '../../db/registry-contract.js';
import { sha256Hex, toBase64Url } from '../../protocol/bytes.js';

const H = 4;
/** Boundary b's tensor in chunk c: rows x H float32 bytes, distinct per boundary and chunk. */
const tensor = (b: number, c: number, rows: number) => new Uint8Array(rows * H * 4).fill(16 * b + c + 1);
const CHUNKS: [number, number][] = [
  [0, 1],
  [1, 3],
];
/** Rows of each chunk: the prompt (3 positions) for the prefill, one per later step. */
const rowsOf = (c: number) => (c === 0 ? 3 : CHUNKS[c]![1] - CHUNKS[c]![0]);

/** An attempt over `hops` hops whose attestations commit to `tensor(b, c)` at every boundary. */
async function attempt(hops: number): Promise<JobAttemptRecord> {
  const chunks = [];
  for (const [c, steps] of CHUNKS.entries()) {
    const chunk = [];
    for (let h = 0; h < hops; h++) {
      const input = h === 0 ? 'a'.repeat(64) : await sha256Hex(tensor(h, c, rowsOf(c)));
      const output = h === hops - 1 ? 'b'.repeat(64) : await sha256Hex(tensor(h + 1, c, rowsOf(c)));
      chunk.push({ att: { hop: h, steps, inputCommitment: input, outputCommitment: output }, sig: 'x' });
    }
    chunks.push(chunk);
  }
  const route = Array.from({ length: hops }, (_, i) => ({ agentId: `agent-${i}` }));
  return { ticket: { ticket: { jobId: 'job-1', dtype: 'float32', route } }, chunks, outcome: 'completed' } as unknown as JobAttemptRecord;
}

/** What an honest hop answers to `POST /v1/checks/inputs`. */
function answer(hops: number, hop: number, patch: (c: number, chunk: Record<string, unknown>) => void = () => undefined) {
  return {
    jobId: 'job-1',
    hop,
    dtype: 'float32',
    hiddenSize: H,
    chunks: CHUNKS.map((steps, c) => {
      const chunk: Record<string, unknown> = { steps, ...(hop === 0 ? { inputTokenIds: [1, 2, 3] } : {}) };
      if (hop > 0) chunk.input = toBase64Url(tensor(hop, c, rowsOf(c)));
      if (hop < hops - 1) chunk.output = toBase64Url(tensor(hop + 1, c, rowsOf(c)));
      patch(c, chunk);
      return chunk;
    }),
  };
}

describe('judging a disclosure', () => {
  it('accepts an honest hop\'s answer: one tensor per chunk, for each side it had', async () => {
    const a = await attempt(3);
    const head = await judgeDisclosure(a, 0, answer(3, 0));
    expect(head).toMatchObject({ hop: 0, status: 'disclosed', dtype: 'float32' });
    expect(head.status === 'disclosed' && head.outputs?.length).toBe(2);
    expect(head.status === 'disclosed' && head.inputs).toBeUndefined();
    const middle = await judgeDisclosure(a, 1, answer(3, 1));
    expect(middle.status === 'disclosed' && [middle.inputs?.length, middle.outputs?.length]).toEqual([2, 2]);
    const tail = await judgeDisclosure(a, 2, answer(3, 2));
    expect(tail.status === 'disclosed' && [tail.inputs?.length, tail.outputs]).toEqual([2, undefined]);
  });

  it('extra chunks the attempt never got (the job went on after the edge stopped) are ignored', async () => {
    const a = await attempt(2);
    const body = answer(2, 1);
    body.chunks.push({ steps: [3, 4], input: toBase64Url(tensor(9, 9, 1)) });
    expect((await judgeDisclosure(a, 1, body)).status).toBe('disclosed');
  });

  it('a tensor that does not hash to the commitment the hop itself attested is withholding', async () => {
    const a = await attempt(2);
    const r = await judgeDisclosure(a, 0, answer(2, 0, (c, chunk) => c === 1 && (chunk.output = toBase64Url(tensor(7, 7, 2)))));
    expect(r).toMatchObject({ hop: 0, status: 'withheld', reason: 'commitment_mismatch' });
  });

  it('a missing chunk or side is withholding (misaligned)', async () => {
    const a = await attempt(2);
    const fewer = answer(2, 1);
    fewer.chunks = fewer.chunks.slice(0, 1);
    expect(await judgeDisclosure(a, 1, fewer)).toMatchObject({ status: 'withheld', reason: 'misaligned' });
    const shifted = answer(2, 1, (c, chunk) => c === 1 && (chunk.steps = [1, 2]));
    expect(await judgeDisclosure(a, 1, shifted)).toMatchObject({ status: 'withheld', reason: 'misaligned' });
    const noSide = answer(2, 0, (c, chunk) => c === 0 && delete chunk.output);
    expect(await judgeDisclosure(a, 0, noSide)).toMatchObject({ status: 'withheld', reason: 'misaligned' });
  });

  it('another job, hop or dtype, or not a disclosure at all, is withholding (malformed)', async () => {
    const a = await attempt(2);
    expect(await judgeDisclosure(a, 1, { ...answer(2, 1), jobId: 'job-2' })).toMatchObject({ status: 'withheld', reason: 'malformed' });
    expect(await judgeDisclosure(a, 1, answer(2, 0))).toMatchObject({ status: 'withheld', reason: 'malformed' });
    expect(await judgeDisclosure(a, 1, { ...answer(2, 1), dtype: 'float16' })).toMatchObject({ status: 'withheld', reason: 'malformed' });
    expect(await judgeDisclosure(a, 1, { error: 'nope' })).toMatchObject({ status: 'withheld', reason: 'malformed' });
    expect(await judgeDisclosure(a, 1, answer(2, 1, (c, chunk) => c === 0 && (chunk.input = '@@@')))).toMatchObject({ status: 'withheld', reason: 'malformed' });
  });
});

describe('what the checker is sent', () => {
  const disclosed = (hop: number, sides: { inputs?: string[]; outputs?: string[] }): HopDisclosureResult => ({ hop, status: 'disclosed', dtype: 'float32', ...sides });
  const withheld = (hop: number): HopDisclosureResult => ({ hop, status: 'withheld', reason: 'no_answer', detail: 'timeout' });

  it('one copy of each boundary: the sender\'s, else the receiver\'s', () => {
    const out = assembleDisclosures(3, [disclosed(0, { outputs: ['b1'] }), disclosed(1, { inputs: ['b1'], outputs: ['b2'] }), disclosed(2, { inputs: ['b2'] })]);
    expect(out.disclosures).toEqual([
      { hop: 0, dtype: 'float32', outputs: ['b1'] },
      { hop: 1, dtype: 'float32', outputs: ['b2'] },
    ]);
    expect(out).toMatchObject({ withheld: [], omitted: [] });
  });

  it('a silent sender\'s boundary comes from its receiver; the withholders are listed', () => {
    const out = assembleDisclosures(3, [withheld(0), disclosed(1, { inputs: ['b1'], outputs: ['b2'] }), withheld(2)]);
    expect(out.disclosures).toEqual([{ hop: 1, dtype: 'float32', inputs: ['b1'], outputs: ['b2'] }]);
    expect(out.withheld).toEqual([0, 2]);
  });

  it('boundaries past the body budget are left out, and nobody is a withholder for it', () => {
    const out = assembleDisclosures(3, [disclosed(0, { outputs: ['x'.repeat(60)] }), disclosed(1, { inputs: ['x'.repeat(60)], outputs: ['y'.repeat(60)] }), { hop: 2, status: 'too_large' }], 100);
    expect(out.disclosures).toEqual([{ hop: 0, dtype: 'float32', outputs: ['x'.repeat(60)] }]);
    expect(out).toMatchObject({ withheld: [], omitted: [2] });
  });
});
