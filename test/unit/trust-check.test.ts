import { describe, expect, it } from 'vitest';
import { tokenCommitment, type SignedAttestation } from '../../protocol/attestation.js';
import { encodeTokenIds, sha256Hex } from '../../protocol/bytes.js';
import { judgeCheck, lastRows, planCheck, type CheckPlan } from '../../protocol/check.js';
import { commitHidden } from '../../protocol/commitment.js';
import type { JobTicket } from '../../protocol/ticket.js';
import { sampleToken } from '../../pool-agent/runtime/sampler.js';

const H = 32;
const V = 50;
const HEX = 'a'.repeat(64);
const input = [1, 5, 9, 13];

async function ticketFor(sampling = { temperature: 0, topP: 1, topK: 0, seed: 1 }, hops = 1): Promise<JobTicket> {
  return {
    v: 1,
    jobId: 'job-1',
    modelId: HEX,
    dtype: 'float32',
    route: Array.from({ length: hops }, (_, i) => ({ agentId: `a${i}`, layers: [i, i + 1] as [number, number], endpoint: 'http://127.0.0.1:1/' })),
    inputHash: await sha256Hex(encodeTokenIds(input)),
    promptTokens: input.length,
    prefixTokens: 0,
    limits: { maxTokens: 100, deadline: 2e12 },
    sampling,
    stopTokenIds: [],
    nonce: 'nonce-nonce-nonce-1',
    issuedAt: 1e12,
    expiresAt: 2e12,
    edgeKeyId: 'k',
  };
}

/** One chunk per token; the hidden row of step j is `rows[j]`. */
async function chunksFor(ticket: JobTicket, tokens: number[], rows: Float32Array | null): Promise<SignedAttestation[][]> {
  const out: SignedAttestation[][] = [];
  for (let j = 0; j < tokens.length; j++) {
    const chunk: SignedAttestation[] = [];
    for (let h = 0; h < ticket.route.length; h++) {
      const last = h === ticket.route.length - 1;
      chunk.push({
        att: {
          v: 1,
          ticketHash: HEX,
          jobId: ticket.jobId,
          agentId: ticket.route[h]!.agentId,
          modelId: HEX,
          hop: h,
          layers: ticket.route[h]!.layers,
          steps: [j, j + 1],
          inputCommitment: HEX,
          outputCommitment: last ? await tokenCommitment([tokens[j]!]) : HEX,
          ...(last ? { outputTokenIds: [tokens[j]!], ...(rows ? { hiddenCommitment: commitHidden(rows.subarray(j * H, (j + 1) * H), 1, H, { k: 8 }) } : {}) } : {}),
          prevHash: null,
          issuedAt: 1e12,
        },
        sig: 'x',
      });
    }
    out.push(chunk);
  }
  return out;
}

function rowsFor(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n * H }, (_, i) => Math.sin(i * 0.37 + seed) * (1 + ((i * 7 + seed) % 5)));
}

/** Logits whose argmax at step j is tokens[j], by `margin`, with the runner-up `runnerUp[j]`. */
function logitsFor(tokens: number[], margin: number, runnerUp = tokens.map((t) => (t + 1) % V)): Float32Array {
  const out = new Float32Array(tokens.length * V);
  for (let j = 0; j < tokens.length; j++) {
    for (let v = 0; v < V; v++) out[j * V + v] = -5 + ((v * 13 + j) % 7) * 0.1;
    out[j * V + tokens[j]!] = 3;
    out[j * V + runnerUp[j]!] = 3 - margin;
  }
  return out;
}

async function plan(ticket: JobTicket, tokens: number[], rows: Float32Array | null): Promise<CheckPlan> {
  const p = await planCheck(ticket, input, await chunksFor(ticket, tokens, rows));
  if (!p.ok) throw new Error(p.verdict.detail);
  return p.plan;
}

describe('planCheck', () => {
  it('lays out one teacher-forced prefill: input ++ generated but the last, one kept row per token', async () => {
    const t = await ticketFor();
    const p = await plan(t, [7, 8, 9], rowsFor(3, 0));
    expect(p.sequence).toEqual([1, 5, 9, 13, 7, 8]);
    expect(p.logitsToKeep).toBe(3);
    expect(p.generated).toEqual([7, 8, 9]);
    expect(lastRows(new Float32Array(6 * H).map((_, i) => i), 6, H, 3)[0]).toBe(3 * H);
  });

  it('refuses an input that does not hash to the ticket, or broken chunk layouts (inconclusive, nobody blamed)', async () => {
    const t = await ticketFor();
    const chunks = await chunksFor(t, [7, 8], rowsFor(2, 0));
    expect(await planCheck(t, [1, 5, 9, 14], chunks)).toMatchObject({ ok: false, verdict: { status: 'inconclusive', reason: 'bad_request' } });
    expect(await planCheck(t, input, [chunks[1]!, chunks[0]!])).toMatchObject({ ok: false, verdict: { status: 'inconclusive' } });
    expect(await planCheck(t, input, [[{ garbage: true }]])).toMatchObject({ ok: false, verdict: { status: 'inconclusive' } });
    expect(await planCheck(t, input, 'nope')).toMatchObject({ ok: false });
  });
});

describe('judgeCheck', () => {
  const tokens = [7, 8, 9, 10];

  it('passes matching rows and tokens', async () => {
    const t = await ticketFor();
    const rows = rowsFor(4, 0);
    const v = judgeCheck({ plan: await plan(t, tokens, rows), hidden: rows, logits: logitsFor(tokens, 1), hiddenSize: H, vocabSize: V, sample: sampleToken });
    expect(v).toMatchObject({ status: 'pass', evidence: { stepsChecked: 4, nearTies: [] } });
  });

  it('fails a different hidden row at its step', async () => {
    const t = await ticketFor();
    const rows = rowsFor(4, 0);
    const other = Float32Array.from(rows);
    other.set(rowsFor(1, 3), 2 * H);
    const v = judgeCheck({ plan: await plan(t, tokens, rows), hidden: other, logits: logitsFor(tokens, 1), hiddenSize: H, vocabSize: V, sample: sampleToken });
    expect(v).toMatchObject({ status: 'fail', reason: 'hidden_mismatch', hop: 0, agentId: 'a0', evidence: { step: 2 } });
  });

  it('fails a token the sampler would not pick, with both logits as evidence', async () => {
    const t = await ticketFor();
    const rows = rowsFor(4, 0);
    const v = judgeCheck({ plan: await plan(t, [7, 8, 11, 10], rows), hidden: rows, logits: logitsFor(tokens, 0.5), hiddenSize: H, vocabSize: V, sample: sampleToken });
    expect(v).toMatchObject({ status: 'fail', reason: 'sampling_mismatch', evidence: { step: 2, returnedToken: 11, expectedToken: 9 } });
  });

  it('accepts a float-noise near tie (and says so) but not a real gap', async () => {
    const t = await ticketFor();
    const rows = rowsFor(4, 0);
    // The node returned the runner-up at step 1, which trails by 1e-4: an argmax flip by noise.
    const p = await plan(t, [7, 9, 9, 10], rows);
    const tie = judgeCheck({ plan: p, hidden: rows, logits: logitsFor(tokens, 1e-4, [8, 9, 10, 11]), hiddenSize: H, vocabSize: V, sample: sampleToken });
    expect(tie).toMatchObject({ status: 'pass', evidence: { nearTies: [1] } });
    const gap = judgeCheck({ plan: p, hidden: rows, logits: logitsFor(tokens, 1e-2, [8, 9, 10, 11]), hiddenSize: H, vocabSize: V, sample: sampleToken });
    expect(gap).toMatchObject({ status: 'fail', reason: 'sampling_mismatch', evidence: { step: 1 } });
  });

  it('samples with the ticket seed at the absolute step', async () => {
    const sampling = { temperature: 1, topP: 1, topK: 0, seed: 42 };
    const t = await ticketFor(sampling);
    const flat = new Float32Array(4 * V).fill(0);
    const drawn = [0, 1, 2, 3].map((j) => sampleToken(flat.subarray(j * V, (j + 1) * V), sampling, j));
    const rows = rowsFor(4, 0);
    expect(judgeCheck({ plan: await plan(t, drawn, rows), hidden: rows, logits: flat, hiddenSize: H, vocabSize: V, sample: sampleToken }).status).toBe('pass');
    const shifted = [0, 1, 2, 3].map((j) => sampleToken(flat.subarray(0, V), sampling, j + 1));
    expect(judgeCheck({ plan: await plan(t, shifted, rows), hidden: rows, logits: flat, hiddenSize: H, vocabSize: V, sample: sampleToken }).status).toBe('fail');
  });

  it('a missing commitment is the node fault; a wrong recomputation shape is the checker fault', async () => {
    const t = await ticketFor();
    const rows = rowsFor(4, 0);
    expect(judgeCheck({ plan: await plan(t, tokens, null), hidden: rows, logits: logitsFor(tokens, 1), hiddenSize: H, vocabSize: V, sample: sampleToken })).toMatchObject({ status: 'fail', reason: 'missing_commitment' });
    expect(judgeCheck({ plan: await plan(t, tokens, rows), hidden: rows.subarray(H), logits: logitsFor(tokens, 1), hiddenSize: H, vocabSize: V, sample: sampleToken })).toMatchObject({ status: 'inconclusive', reason: 'checker_error' });
  });

  it('a garbage commitment fails as missing, never throws', async () => {
    const t = await ticketFor();
    const rows = rowsFor(4, 0);
    const p = await plan(t, tokens, rows);
    p.chunks[1]!.hiddenCommitment = 'VAEQAQ';
    expect(judgeCheck({ plan: p, hidden: rows, logits: logitsFor(tokens, 1), hiddenSize: H, vocabSize: V, sample: sampleToken })).toMatchObject({ status: 'fail', reason: 'missing_commitment', evidence: { step: 1 } });
  });
});
