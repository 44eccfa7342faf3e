import { describe, expect, it } from 'vitest';
import { toBase64Url, bytesOf } from '../../protocol/bytes.js';
import { activationCommitment, checkRequestSchema, decodeDisclosure, signVerdict, verifyVerdict, type CheckVerdict } from '../../protocol/check.js';
import { generateSigningKey } from '../../protocol/keys.js';

const verdict: CheckVerdict = {
  jobId: 'job-9',
  status: 'fail',
  reason: 'hidden_mismatch',
  hop: 1,
  agentId: 'agent-b',
  detail: 'step 4: row 0: index overlap 0.25 < 0.75',
  evidence: { step: 4, hidden: { maxExpMismatch: 1, mantissaErrMean: Infinity, mantissaErrMedian: Infinity, indexOverlap: 0, failedRow: -1, detail: 'unusable' } },
};

describe('signed verdicts', () => {
  it('round-trip under the checker key, with non-finite figures as null', async () => {
    const key = await generateSigningKey();
    const signed = await signVerdict(key.privateKey, 'checker-1', verdict, 1_700_000_000_000);
    const back = await verifyVerdict(JSON.parse(JSON.stringify(signed)), key.publicKey);
    expect(back).toMatchObject({ checkerId: 'checker-1', verdict: { status: 'fail', hop: 1, agentId: 'agent-b', evidence: { step: 4, hidden: { mantissaErrMean: null } } } });
  });

  it('reject a tampered verdict, another key, another checker id or garbage', async () => {
    const key = await generateSigningKey();
    const other = await generateSigningKey();
    const signed = await signVerdict(key.privateKey, 'checker-1', verdict, 1_700_000_000_000);
    const flipped = JSON.parse(JSON.stringify(signed));
    flipped.verdict.status = 'pass';
    expect(await verifyVerdict(flipped, key.publicKey)).toBeNull();
    expect(await verifyVerdict({ ...signed, checkerId: 'checker-2' }, key.publicKey)).toBeNull();
    expect(await verifyVerdict(signed, other.publicKey)).toBeNull();
    expect(await verifyVerdict({ ...signed, verdict: { status: 'maybe' } }, key.publicKey)).toBeNull();
    expect(await verifyVerdict('nope', key.publicKey)).toBeNull();
    expect(await verifyVerdict(signed, 'not-a-key')).toBeNull();
  });
});

describe('wire disclosures', () => {
  it('decode to the tensors whose hash the hop attested', async () => {
    const t = Float32Array.from([1.5, -2, 3.25, 0]);
    const d = decodeDisclosure({ hop: 1, dtype: 'float32', inputs: [toBase64Url(bytesOf(t))] });
    expect(d).not.toBeNull();
    expect(await activationCommitment(d!.inputs![0]!)).toBe(await activationCommitment(t));
    const h = decodeDisclosure({ hop: 0, dtype: 'float16', outputs: [toBase64Url(new Uint8Array([0, 60, 0, 188]))] });
    expect(Array.from(h!.outputs![0]!)).toEqual([0x3c00, 0xbc00]);
  });

  it('refuse partial elements and non-base64url', () => {
    expect(decodeDisclosure({ hop: 1, dtype: 'float32', inputs: [toBase64Url(new Uint8Array(6))] })).toBeNull();
    expect(decodeDisclosure({ hop: 1, dtype: 'float32', inputs: ['@@@'] })).toBeNull();
  });
});

describe('check requests', () => {
  const HEX = 'a'.repeat(64);
  const ticket = {
    v: 1, jobId: 'job-1', modelId: HEX, dtype: 'float32', route: [{ agentId: 'a0', layers: [0, 4], endpoint: 'http://127.0.0.1:1/' }],
    inputHash: HEX, promptTokens: 1, prefixTokens: 0, limits: { maxTokens: 10, deadline: 2e12 }, sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 },
    stopTokenIds: [], nonce: 'nonce-nonce-nonce-1', issuedAt: 1e12, expiresAt: 2e12, edgeKeyId: 'k',
  };
  const att = { v: 1, ticketHash: HEX, jobId: 'job-1', agentId: 'a0', modelId: HEX, hop: 0, layers: [0, 4], steps: [0, 1], inputCommitment: HEX, outputCommitment: HEX, outputTokenIds: [5], prevHash: null, issuedAt: 1e12 };
  const valid = { signedTicket: { ticket, signature: 'x' }, promptIds: [1], prefixIds: [], attestations: [[{ att, sig: 'x' }]] };

  it('accept a job record and bound every list', () => {
    expect(checkRequestSchema.safeParse(valid).success).toBe(true);
    expect(checkRequestSchema.safeParse({ ...valid, attestations: [] }).success).toBe(false);
    expect(checkRequestSchema.safeParse({ ...valid, promptIds: new Array(40_000).fill(1) }).success).toBe(false);
    expect(checkRequestSchema.safeParse({ ...valid, attestations: [new Array(17).fill({ att, sig: 'x' })] }).success).toBe(false);
    expect(checkRequestSchema.safeParse({ ...valid, disclosures: new Array(17).fill({ hop: 0, dtype: 'float32' }) }).success).toBe(false);
  });
});
