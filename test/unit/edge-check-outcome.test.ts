/**
 * Telling the client (issue 15): a real answer through the edge app (memory store, fake agents
 * signing real attestations), charged, then re-executed by fake checkers that sign real verdicts;
 * `GET /v1/jobs/:id/attestation` carries the outcome, and a job found bad against a hop is
 * handed back to the key's spend exactly once. Plus `jobCheckOutcome` on its own (pending,
 * unchecked, a dispute voided after the timeout, what never leaves).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../../edge/app.js';
import { refundJob } from '../../edge/billing/refund.js';
import { jobCheckOutcome } from '../../edge/checks/outcome.js';
import type { AgentTransport } from '../../edge/deps.js';
import { createMemoryStore, type MemoryStore } from '../../edge/store/memory.js';
import type { JobRecord } from '../../db/registry-contract.js';
import { createByteTokenizer } from '../../edge/text/byte-tokenizer.js';
import { importCheckSecret } from '../../edge/trust/sampling.js';
import { chatCompletionSchema, jobAttestationSchema, type JobCheck } from '../../protocol/api.js';
import { generateApiKey } from '../../protocol/api-key.js';
import { checkRequestSchema, signVerdict, type CheckVerdict } from '../../protocol/check.js';
import { generateSigningKey, type SigningKey } from '../../protocol/keys.js';
import { manifestHash } from '../../protocol/manifest.js';
import { fakeAgentTransport, testManifest, type FakeAgent } from './edge-fixtures.js';

const NUM_LAYERS = 4;
const HW = { devices: [{ kind: 'cpu' as const, name: 'cpu', memoryBytes: 1 }], memoryBytes: 1, platform: 'test' };

/** How a fake checker judges: pass, fail blaming the route's last hop, or fail naming no hop. */
type Judgement = 'pass' | 'fail' | 'fail-unattributed';

interface Checker {
  id: string;
  key: SigningKey;
  host: string;
  judgement: Judgement;
  asked: number;
}

let store: MemoryStore;
let pending: Promise<unknown>[];

async function network(opts: { checkers: Judgement[]; checks?: boolean }) {
  const edgeKey = await generateSigningKey();
  const manifest = testManifest(NUM_LAYERS);
  const modelId = await manifestHash(manifest);
  await store.publishModel({ manifest, id: modelId, publishedBy: null, at: Date.now() });
  const now = Date.now();
  const register = async (owner: string, host: string, key: SigningKey, price: number) => {
    const pool = await store.createPool({ ownerAccountId: owner, name: `pool-${owner}`, region: 'eu-west' });
    await store.addStake(pool.id, 1_000_000, 'test', now);
    const rec = await store.registerAgent(
      { poolId: pool.id, ownerAccountId: owner, endpoint: `http://${host}:9000`, publicKey: key.publicKey, hardware: HW, priceMicroUsdPerMTok: price, throughputTokensPerS: 100, spans: [{ modelId, layers: [0, NUM_LAYERS] }] },
      now,
    );
    await store.applyHeartbeat({ agentId: rec.id, seq: 1, sentAt: now, receivedAt: now, queueDepth: 0, load: 0, freeKvBytes: 1, activeSessions: 0 });
    return rec.id;
  };

  // The agent that serves: 1 USD per million tokens, so the job costs one micro-USD per token.
  const servedKey = await generateSigningKey();
  const servedId = await register('acct_owner', 'served.test', servedKey, 1_000_000);
  const served: FakeAgent = { id: servedId, endpoint: 'http://served.test:9000', key: servedKey, spec: { layers: [0, NUM_LAYERS] }, jobs: [], cancels: [] };
  const checkers: Checker[] = [];
  for (const [i, judgement] of opts.checkers.entries()) {
    const key = await generateSigningKey();
    const host = `checker-${i}.test`;
    const id = await register(`acct_checker_${i}`, host, key, 1_000_000);
    // Out of routing (cooldown), still an independent checker holding the whole model.
    await store.setCooldown(id, now + 3_600_000, 'test: checks only');
    checkers.push({ id, key, host, judgement, asked: 0 });
  }

  const agents = fakeAgentTransport(new Map([[served.id, served]]), edgeKey.publicKey);
  const transport: AgentTransport = async (url, init) => {
    const u = new URL(url);
    const checker = checkers.find((c) => c.host === u.hostname);
    if (!checker) return agents(url, init);
    checker.asked++;
    const { signedTicket } = checkRequestSchema.parse(JSON.parse(String(init.body)));
    const ticket = signedTicket.ticket;
    const last = ticket.route.length - 1;
    const verdict: CheckVerdict =
      checker.judgement === 'pass'
        ? { jobId: ticket.jobId, status: 'pass', detail: 'every step agrees', evidence: {} }
        : checker.judgement === 'fail'
          ? { jobId: ticket.jobId, status: 'fail', reason: 'sampling_mismatch', hop: last, agentId: ticket.route[last]!.agentId, detail: 'step 1: returned token 104, the sampler gives 110', evidence: { step: 1, returnedToken: 104, expectedToken: 110 } }
          : { jobId: ticket.jobId, status: 'fail', reason: 'hidden_mismatch', detail: 'the route is wrong', evidence: {} };
    return Response.json(await signVerdict(checker.key.privateKey, checker.id, verdict, Date.now()));
  };

  const logs: Record<string, unknown>[] = [];
  const app = createApp({
    store,
    signingKey: { id: 'edge-test-1', publicKey: edgeKey.publicKey, privateKey: edgeKey.privateKey },
    transport,
    tokenizer: createByteTokenizer(),
    config: { keepAliveMs: 50, firstTokenTimeoutMs: 2_000, interTokenTimeoutMs: 500 },
    random: () => 0.5,
    waitUntil: (p) => void pending.push(p.catch((err: unknown) => logs.push({ msg: 'background failure', err: String(err) }))),
    log: (e) => void logs.push(e),
    checks: opts.checks === false ? null : { key: await importCheckSecret(new Uint8Array(32).fill(7)), rateOverride: 1 },
  });
  const k = await generateApiKey();
  const apiKey = await store.createApiKey({ accountId: 'acct_client', prefix: k.prefix, hash: k.hash, scopes: ['inference'] });
  const other = await generateApiKey();
  await store.createApiKey({ accountId: 'acct_other', prefix: other.prefix, hash: other.hash, scopes: ['inference'] });

  /** Waits for every waitUntil'd promise, the checks among them. */
  const settle = async () => {
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 5));
      await Promise.all(pending.splice(0));
    }
  };
  const ask = async () => {
    const res = await app.request('/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, seed: 3 }),
    });
    expect(res.status).toBe(200);
    const completion = chatCompletionSchema.parse(await res.json());
    await settle();
    return completion;
  };
  const attestation = async (jobId: string, key = k.key) => app.request(`/v1/jobs/${jobId}/attestation`, { headers: { authorization: `Bearer ${key}` } });
  const check = async (jobId: string): Promise<JobCheck> => {
    const res = await attestation(jobId);
    expect(res.status).toBe(200);
    return jobAttestationSchema.parse(await res.json()).check!;
  };
  const spent = async () => (await store.getApiKeyByPrefix(k.prefix))!.spentMicroUsd;
  const job = async (jobId: string) => (await store.getJob(jobId, 'acct_client'))!;
  return { app, served, checkers, ask, attestation, check, spent, job, logs, otherKey: other.key };
}

beforeEach(() => {
  store = createMemoryStore();
  pending = [];
});

describe('a job found bad is told and not charged', () => {
  it('a failed check naming a hop: the attestation shows fail and the blamed hop, and the spend goes back once', async () => {
    const net = await network({ checkers: ['fail'] });
    const completion = await net.ask();
    const jobId = completion.attestation.job_id;
    const cost = (await net.job(jobId)).costMicroUsd;
    expect(cost).toBe(completion.usage.total_tokens);
    expect(cost).toBeGreaterThan(0);

    const check = await net.check(jobId);
    expect(check).toEqual({
      status: 'fail',
      verdict: { reason: 'sampling_mismatch', detail: 'step 1: returned token 104, the sampler gives 110', step: 1 },
      blame: { attempt: 0, hop: 0, agent_id: net.served.id },
      // Nobody else could settle it (one checker only): the dispute stays open.
      dispute: { id: store.disputes[0]!.id, status: 'open' },
      refunded_micro_usd: cost,
    });
    expect(await net.spent()).toBe(0);
    expect(store.ledger.filter((l) => l.kind === 'refund')).toEqual([
      expect.objectContaining({ kind: 'refund', accountId: 'acct_client', jobId, amount: cost, reason: 'sampling_mismatch', evidence: { disputeId: store.disputes[0]!.id, agentId: net.served.id } }),
    ]);

    // Once per job: refunding again (another failed attempt, a later upheld dispute) hands nothing back.
    const deps = { store, clock: { now: () => Date.now() }, log: () => undefined };
    expect(await refundJob(deps, { jobId, reason: 'hidden_mismatch' })).toBeNull();
    await Promise.all([refundJob(deps, { jobId, reason: 'x' }), refundJob(deps, { jobId, reason: 'y' })]);
    expect(await net.spent()).toBe(0);
    expect(store.ledger.filter((l) => l.kind === 'refund')).toHaveLength(1);
    expect((await net.job(jobId)).refund).toMatchObject({ amountMicroUsd: cost, reason: 'sampling_mismatch' });
  });

  it('an upheld dispute: the attestation shows upheld with its dispute, the job is refunded once, the hop slashed', async () => {
    const net = await network({ checkers: ['fail', 'fail'] });
    const completion = await net.ask();
    const jobId = completion.attestation.job_id;
    const cost = (await net.job(jobId)).costMicroUsd;
    const check = await net.check(jobId);
    expect(check).toMatchObject({
      status: 'upheld',
      verdict: { reason: 'sampling_mismatch' },
      blame: { attempt: 0, hop: 0, agent_id: net.served.id },
      dispute: { id: store.disputes[0]!.id, status: 'upheld' },
      refunded_micro_usd: cost,
    });
    expect(net.checkers.map((c) => c.asked)).toEqual([1, 1]);
    expect((await store.getAgent(net.served.id))!.status).toBe('slashed');
    expect(await net.spent()).toBe(0);
    expect(store.ledger.filter((l) => l.kind === 'refund')).toHaveLength(1);
  });

  it('a passing job is still charged, and says pass', async () => {
    const net = await network({ checkers: ['pass'] });
    const completion = await net.ask();
    const jobId = completion.attestation.job_id;
    const cost = (await net.job(jobId)).costMicroUsd;
    expect(await net.check(jobId)).toEqual({ status: 'pass' });
    expect(await net.spent()).toBe(cost);
    expect(store.ledger.some((l) => l.kind === 'refund')).toBe(false);
  });

  it('a failure that names no hop is told (fail, no blame) but convicts no one and refunds nothing', async () => {
    const net = await network({ checkers: ['fail-unattributed'] });
    const completion = await net.ask();
    const jobId = completion.attestation.job_id;
    const cost = (await net.job(jobId)).costMicroUsd;
    expect(await net.check(jobId)).toEqual({ status: 'fail', verdict: { reason: 'hidden_mismatch', detail: 'the route is wrong' } });
    expect(await net.spent()).toBe(cost);
    expect(store.disputes).toHaveLength(0);
  });

  it('with checks off the job reads unchecked; another account never sees the job', async () => {
    const net = await network({ checkers: ['fail'], checks: false });
    const completion = await net.ask();
    const jobId = completion.attestation.job_id;
    expect(await net.check(jobId)).toEqual({ status: 'unchecked' });
    expect(net.checkers[0]!.asked).toBe(0);
    expect((await net.attestation(jobId, net.otherKey)).status).toBe(404);
  });
});

describe('jobCheckOutcome', () => {
  const NOW = 1_800_000_000_000;
  const base: JobRecord = {
    id: 'job-1',
    accountId: 'acct',
    apiKeyId: 'key',
    modelId: 'm',
    status: 'completed',
    finishReason: 'stop',
    route: ['a'],
    attempts: [],
    tokenIds: [],
    promptTokens: 1,
    completionTokens: 1,
    costMicroUsd: 2,
    createdAt: NOW - 2_000,
    finishedAt: NOW - 1_000,
    checkStatus: null,
  };

  it('pending while a verdict may still come, unchecked once the window passed or with checks off', () => {
    expect(jobCheckOutcome(base, [], { checksOn: true, now: NOW })).toEqual({ status: 'pending' });
    expect(jobCheckOutcome({ ...base, status: 'running', finishedAt: null }, [], { checksOn: true, now: NOW })).toEqual({ status: 'pending' });
    expect(jobCheckOutcome(base, [], { checksOn: true, now: NOW + 60_000 })).toEqual({ status: 'unchecked' });
    expect(jobCheckOutcome(base, [], { checksOn: false, now: NOW })).toEqual({ status: 'unchecked' });
    // A failed job is never checked.
    expect(jobCheckOutcome({ ...base, status: 'failed' }, [], { checksOn: true, now: NOW })).toEqual({ status: 'unchecked' });
  });

  it('a fail whose dispute was voided at its timeout reads voided; the refund given at the failure stands', () => {
    const job = { ...base, checkStatus: 'fail' as const, refund: { amountMicroUsd: 2, reason: 'hidden_mismatch', at: NOW } };
    const voided = [{ id: 'd1', agentId: 'a', status: 'voided' as const, openedAt: NOW, resolvedAt: NOW + 1 }];
    expect(jobCheckOutcome(job, voided, { checksOn: true, now: NOW })).toEqual({ status: 'voided', dispute: { id: 'd1', status: 'voided' }, refunded_micro_usd: 2 });
  });

  it('tells only the verdict\'s reason, detail and step: not the checker, its signature or the evidence figures', () => {
    const signed = { checkerId: 'checker-9', issuedAt: NOW, sig: 'secret-looking-signature', verdict: { jobId: 'job-1', status: 'fail', reason: 'hidden_mismatch', detail: 'step 0: overlap 0.1', evidence: { step: 0, hidden: { maxExpMismatch: 1, mantissaErrMean: 9, mantissaErrMedian: 9, indexOverlap: 0.1, failedRow: 0, detail: 'figures' } } } };
    const job = { ...base, checkStatus: 'fail' as const, checks: [{ kind: 'check', checkerId: 'checker-9', verdict: signed }] };
    const out = jobCheckOutcome(job, [], { checksOn: true, now: NOW });
    expect(out).toEqual({ status: 'fail', verdict: { reason: 'hidden_mismatch', detail: 'step 0: overlap 0.1', step: 0 } });
    expect(JSON.stringify(out)).not.toMatch(/checker-9|secret-looking|mantissa/);
  });
});
