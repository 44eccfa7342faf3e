/**
 * protocol/output-commitment.ts: which rows of a chunk a hop's `outputTopLoc` covers, the
 * commitment itself, the receiving hop's exact check and the checker's judgement of a hop by it.
 */
import { describe, expect, it } from 'vitest';
import type { Attestation } from '../../protocol/attestation.js';
import type { CheckPlan } from '../../protocol/check.js';
import { commitmentBytes, tolerancesFor } from '../../protocol/commitment.js';
import { MAX_OUTPUT_TOPLOC_CHARS } from '../../protocol/limits.js';
import {
  chunkRows,
  commitOutputRows,
  compareOutputRows,
  judgeHopCommitment,
  MAX_OUTPUT_TOPLOC_ROWS,
  outputTopLocRows,
  receivedTolerances,
} from '../../protocol/output-commitment.js';
import type { JobTicket } from '../../protocol/ticket.js';
import { toFloat16Array } from '../../pool-agent/model/weights.js';
import { activationValues, chunkOutputTopLoc } from '../../pool-agent/server/attest.js';

const H = 32;
const SEED = 'c0ffee'.repeat(10) + 'beef';

/** Rows that look like activations: a few large entries per row, the rest small. */
function rows(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n * H);
  let x = seed;
  for (let i = 0; i < out.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = ((x >>> 8) / 2 ** 24 - 0.5) * (i % 7 === 0 ? 20 : 1);
  }
  return out;
}

describe('rows committed', () => {
  it('every row of a chunk of at most 64 rows', () => {
    expect(outputTopLocRows(1, SEED)).toEqual([0]);
    expect(outputTopLocRows(MAX_OUTPUT_TOPLOC_ROWS, SEED)).toEqual(Array.from({ length: MAX_OUTPUT_TOPLOC_ROWS }, (_, i) => i));
  });

  it('of a longer chunk: 64 distinct rows in order, the last one always, drawn from the output commitment', () => {
    for (const n of [65, 100, 1000, 32_768]) {
      const picked = outputTopLocRows(n, SEED);
      expect(picked).toHaveLength(MAX_OUTPUT_TOPLOC_ROWS);
      expect(new Set(picked).size).toBe(MAX_OUTPUT_TOPLOC_ROWS);
      expect(picked.at(-1)).toBe(n - 1);
      expect(picked.every((r, i) => Number.isInteger(r) && r >= 0 && r < n && (i === 0 || r > picked[i - 1]!))).toBe(true);
      expect(outputTopLocRows(n, SEED)).toEqual(picked);
    }
    const other = outputTopLocRows(1000, 'ab'.repeat(32));
    expect(other).not.toEqual(outputTopLocRows(1000, SEED));
    // Spread over the chunk, not bunched at one end.
    const picked = outputTopLocRows(10_000, SEED);
    expect(picked.filter((r) => r < 5_000).length).toBeGreaterThan(16);
    expect(picked.filter((r) => r >= 5_000).length).toBeGreaterThan(16);
  });

  it('fits the attestation bound at k = 16 for any chunk', () => {
    const c = commitOutputRows(rows(200), 200, H, SEED);
    expect(c.length).toBe(Math.ceil((commitmentBytes(MAX_OUTPUT_TOPLOC_ROWS, 16) * 4) / 3));
    expect(c.length).toBeLessThanOrEqual(MAX_OUTPUT_TOPLOC_CHARS);
  });
});

describe('comparison', () => {
  it('agrees with the same rows and with float noise; names the chunk row that changed', () => {
    const r = rows(100);
    const c = commitOutputRows(r, 100, H, SEED);
    expect(compareOutputRows(c, r, 100, H, SEED, tolerancesFor('float32')).ok).toBe(true);
    const noisy = r.map((x) => x * (1 + 1e-6));
    expect(compareOutputRows(c, noisy, 100, H, SEED, tolerancesFor('float32')).ok).toBe(true);
    const row = outputTopLocRows(100, SEED)[10]!;
    const bad = r.slice();
    for (let i = 0; i < H; i++) bad[row * H + i] = bad[row * H + i]! * 1.03;
    const res = compareOutputRows(c, bad, 100, H, SEED, tolerancesFor('float32'));
    expect(res).toMatchObject({ ok: false, failedRow: row });
    expect(res.detail).toMatch(new RegExp(`^row ${row}:`));
    // Another seed selects other rows: the commitment does not describe them.
    expect(compareOutputRows(c, r, 100, H, 'ab'.repeat(32), tolerancesFor('float32')).ok).toBe(false);
  });

  it('the receiving hop accepts exactly the bytes committed to, nothing within mere tolerance', () => {
    const r = rows(8);
    const c = commitOutputRows(r, 8, H, SEED);
    expect(compareOutputRows(c, r, 8, H, SEED, receivedTolerances('float32')).ok).toBe(true);
    expect(compareOutputRows(c, r, 8, H, SEED, receivedTolerances('float16')).ok).toBe(true);
    const nudged = r.map((x) => x * (1 + 2e-5));
    expect(compareOutputRows(c, nudged, 8, H, SEED, tolerancesFor('float32')).ok).toBe(true);
    expect(compareOutputRows(c, nudged, 8, H, SEED, receivedTolerances('float32')).ok).toBe(false);
  });

  it('never throws on hostile commitments', () => {
    const r = rows(4);
    for (const c of [undefined, 42, '', 'AAAA', '!!!!', 'A'.repeat(MAX_OUTPUT_TOPLOC_CHARS + 4)]) {
      expect(compareOutputRows(c, r, 4, H, SEED, tolerancesFor('float32')).ok).toBe(false);
    }
    expect(compareOutputRows(commitOutputRows(r, 4, H, SEED), r.subarray(0, H), 4, H, SEED, tolerancesFor('float32')).ok).toBe(false);
  });
});

describe("the checker's judgement of a hop by its commitments", () => {
  const inputLength = 70;
  const route = [0, 1, 2].map((i) => ({ agentId: `agent-${i}`, layers: [i, i + 1] as [number, number], endpoint: 'http://a.test' }));
  const ticket = { jobId: 'job-1', route, prefixTokens: 0, dtype: 'float32' } as unknown as JobTicket;
  /** Chunks: the prefill (70 rows, sampled), then two of 3 steps. Positions: 70 + 7 - 1 = 76. */
  const steps: [number, number][] = [
    [0, 1],
    [1, 4],
    [4, 8],
  ];
  const positions = inputLength + 8 - 1;
  const truth = rows(positions, 7);

  function plan(commit: (chunk: number, start: number, count: number) => Partial<Attestation>): CheckPlan {
    const layout: { start: number; count: number }[] = [];
    let start = 0;
    for (const [i, [a, b]] of steps.entries()) {
      const count = b - a + (i === 0 ? inputLength - 1 : 0);
      layout.push({ start, count });
      start += count;
    }
    const chunks = steps.map((s, c) => {
      const { start: st, count } = layout[c]!;
      const att = (hop: number) => ({ hop, steps: s, outputCommitment: `${c}`.padStart(64, '0'), ...(hop === 0 ? commit(c, st, count) : {}) }) as Attestation;
      return { steps: s, tokenIds: [], hiddenCommitment: undefined, attestations: [att(0), att(1), att(2)] };
    });
    return { jobId: 'job-1', ticket, inputLength, sequence: [], logitsToKeep: 8, generated: [], chunks };
  }
  const honest = plan((c, start, count) => ({ outputTopLoc: commitOutputRows(truth.subarray(start * H), count, H, `${c}`.padStart(64, '0')) }));

  it('lays the chunks out over the re-run positions', () => {
    expect(chunkRows(honest)).toEqual([
      { start: 0, count: 70 },
      { start: 70, count: 3 },
      { start: 73, count: 4 },
    ]);
  });

  it('agrees with the rows the hop committed to, complete when every chunk carries one', () => {
    expect(judgeHopCommitment(honest, 0, truth, H)).toEqual({ kind: 'agrees', complete: true });
    expect(judgeHopCommitment(honest, 1, truth, H)).toEqual({ kind: 'absent' });
    const partial = plan((c, start, count) => (c === 1 ? {} : { outputTopLoc: commitOutputRows(truth.subarray(start * H), count, H, `${c}`.padStart(64, '0')) }));
    expect(judgeHopCommitment(partial, 0, truth, H)).toEqual({ kind: 'agrees', complete: false });
  });

  it('disagrees with other rows, naming the position and step', () => {
    const other = truth.slice();
    for (let i = 0; i < H; i++) other[74 * H + i] = other[74 * H + i]! + 1;
    const j = judgeHopCommitment(honest, 0, other, H);
    expect(j.kind).toBe('disagrees');
    if (j.kind !== 'disagrees') return;
    expect(j.verdict).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 0, agentId: 'agent-0', evidence: { step: 5 } });
    expect(j.verdict.detail).toMatch(/position 74/);
  });

  it('a commitment that does not decode or has another shape is malformed', () => {
    const garbage = plan((c) => (c === 2 ? { outputTopLoc: 'AAAA' } : {}));
    expect(judgeHopCommitment(garbage, 0, truth, H)).toMatchObject({ kind: 'malformed', verdict: { reason: 'missing_commitment', hop: 0 } });
    // Committed for another hidden size than the model's.
    expect(judgeHopCommitment(honest, 0, truth, H + 1).kind).toBe('malformed');
  });
});

describe("the agent's commitment of the bytes it sends", () => {
  it('float32 bytes at any offset, float16 bytes decoded first: the same commitment as of the values', () => {
    const r = rows(5);
    const bytes = new Uint8Array(r.buffer.slice(0));
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    expect(chunkOutputTopLoc(shifted.subarray(1), 'float32', H, SEED)).toBe(commitOutputRows(r, 5, H, SEED));
    const half = toFloat16Array(r);
    const halfBytes = new Uint8Array(half.buffer);
    const widened = activationValues(halfBytes, 'float16');
    expect(widened).toHaveLength(5 * H);
    expect(chunkOutputTopLoc(halfBytes, 'float16', H, SEED)).toBe(commitOutputRows(widened, 5, H, SEED));
    // Within fp16 tolerances of the float32 values it came from, not within exact ones.
    expect(compareOutputRows(chunkOutputTopLoc(halfBytes, 'float16', H, SEED), r, 5, H, SEED, tolerancesFor('float16')).ok).toBe(true);
  });

  it('a long chunk: only the sampled rows are decoded, with the same commitment as of all the values', () => {
    const r = rows(300, 3);
    expect(chunkOutputTopLoc(new Uint8Array(r.buffer), 'float32', H, SEED)).toBe(commitOutputRows(r, 300, H, SEED));
    const half = new Uint8Array(toFloat16Array(r).buffer);
    expect(chunkOutputTopLoc(half, 'float16', H, SEED)).toBe(commitOutputRows(activationValues(half, 'float16'), 300, H, SEED));
    expect(() => chunkOutputTopLoc(half.subarray(2), 'float16', H, SEED)).toThrow(RangeError);
  });
});
