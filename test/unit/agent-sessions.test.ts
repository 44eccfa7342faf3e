/**
 * Sessions and lifecycle: caps on sessions and KV bytes with a clear 503 + retry-after, idle
 * expiry, sessions freed on done / client disconnect / downstream failure (blaming the right
 * agent), graceful drain ending with `shutdown`, and the metrics text.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fakeModel, fakeSpan } from '../support/fake-span.js';
import { createTestEdge, runJob, startChain, tokensOf, type InProcessChain } from '../support/agents.js';
import { SessionManager } from '../../pool-agent/server/session-manager.js';
import { AgentError } from '../../pool-agent/server/errors.js';

const PROMPT = [1, 4, 6, 8];
const open: InProcessChain[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});

async function setup(spans: Parameters<typeof startChain>[0]['spans'], agentOptions?: Parameters<typeof startChain>[0]['agentOptions']) {
  const edge = await createTestEdge();
  const chain = await startChain({ edge, spans, ...(agentOptions ? { agentOptions } : {}) });
  open.push(chain);
  return { edge, chain };
}

describe('SessionManager', () => {
  const session = () => ({ length: 0, kvBytes: 0, forward: async () => ({ kind: 'hidden' as const, data: new Float32Array(0), seqLen: 0 }), dispose: vi.fn() });

  it('caps sessions and KV bytes, refuses with capacity + retry-after, frees on close and on idle expiry', () => {
    let now = 1_000;
    const m = new SessionManager({ maxSessions: 2, maxKvBytes: 1000, idleMs: 10_000 }, () => now);
    const base = { ticketHash: 'h', hop: 0, maxPositions: 10, nextStep: 0 };
    const s1 = session();
    m.open({ ...base, jobId: 'a', reservedBytes: 600, create: () => s1 });
    const tooBig = (() => {
      try {
        m.open({ ...base, jobId: 'b', reservedBytes: 500, create: session });
      } catch (e) {
        return e as AgentError;
      }
    })();
    expect(tooBig).toBeInstanceOf(AgentError);
    expect(tooBig).toMatchObject({ code: 'capacity', status: 503 });
    expect(tooBig!.retryAfter).toBeGreaterThan(0);
    m.open({ ...base, jobId: 'b', reservedBytes: 400, create: session });
    expect(() => m.open({ ...base, jobId: 'c', reservedBytes: 0, create: session })).toThrow(/sessions are in use/);
    expect(() => m.open({ ...base, jobId: 'a', reservedBytes: 0, create: session })).toThrow(/already has a session/);
    expect(m.reservedBytes).toBe(1000);
    m.close('b');
    expect(m.reservedBytes).toBe(600);
    now += 10_001;
    expect(m.sweep()).toEqual(['a']);
    expect(s1.dispose).toHaveBeenCalledOnce();
    expect(m.size).toBe(0);
  });

  it('refuses a second step on a busy session and frames of another ticket', async () => {
    const m = new SessionManager({ maxSessions: 2, maxKvBytes: 1000, idleMs: 10_000 });
    m.open({ jobId: 'a', ticketHash: 'h', hop: 1, reservedBytes: 1, maxPositions: 10, nextStep: 0, create: session });
    let release!: () => void;
    const first = m.withSession('a', 'h', () => new Promise<void>((r) => (release = r)));
    await expect(m.withSession('a', 'h', async () => 1)).rejects.toMatchObject({ code: 'busy' });
    await expect(m.withSession('a', 'other', async () => 1)).rejects.toMatchObject({ code: 'invalid_ticket' });
    await expect(m.withSession('zzz', 'h', async () => 1)).rejects.toMatchObject({ code: 'unknown_session' });
    release();
    await first;
  });
});

describe('agent capacity and lifecycle', () => {
  it('answers 503 capacity with retry-after when all sessions are busy, and serves again once freed', async () => {
    const model = await fakeModel();
    const { edge, chain } = await setup([fakeSpan(model, [0, 4], { delayMs: 20 })], () => ({ limits: { maxSessions: 1 } }));
    const t1 = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 10 });
    const running = runJob(chain.url, { signedTicket: t1.signed, promptIds: PROMPT, prefixIds: [] });
    await vi.waitFor(() => expect(chain.agents[0]!.core.sessions.size).toBe(1));
    const t2 = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 10 });
    const body2 = { signedTicket: t2.signed, promptIds: PROMPT, prefixIds: [] };
    const refused = await runJob(chain.url, body2);
    expect(refused.status).toBe(503);
    expect(refused.error?.code).toBe('capacity');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(tokensOf((await running).events)).toHaveLength(10);
    expect(chain.agents[0]!.core.sessions.size).toBe(0);
    // The refused ticket's nonce was given back: the same ticket runs now.
    expect((await runJob(chain.url, body2)).status).toBe(200);
  });

  it('refuses a job whose KV reservation exceeds what the agent offers', async () => {
    const model = await fakeModel();
    const span = fakeSpan(model, [0, 4]);
    const { edge, chain } = await setup([span], () => ({ limits: { maxKvBytes: span.kvBytesPerToken * 20 } }));
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 17 });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    expect(res.status).toBe(503);
    expect(res.error?.message).toMatch(/KV/);
  });

  it('a downstream hop that refuses capacity fails the job with its agent id, and the head frees its session', async () => {
    const model = await fakeModel();
    const { edge, chain } = await setup([fakeSpan(model, [0, 2]), fakeSpan(model, [2, 4])], (i) => (i === 1 ? { limits: { maxKvBytes: 10 } } : {}));
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 4 });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    expect(res.events).toHaveLength(1);
    expect(res.events[0]).toMatchObject({ type: 'error', code: 'capacity', agentId: 'agent-1' });
    expect(chain.agents[0]!.core.sessions.size).toBe(0);
  });

  it('an unreachable or failing later hop ends the stream with an error naming it', async () => {
    const model = await fakeModel();
    const { edge, chain } = await setup([fakeSpan(model, [0, 2]), fakeSpan(model, [2, 4], { failAtCall: 2 })]);
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 6 });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    expect(tokensOf(res.events)).toHaveLength(2);
    expect(res.events.at(-1)).toMatchObject({ type: 'error', code: 'internal_error', agentId: 'agent-1' });
    expect(res.events.at(-1)).not.toHaveProperty('message', expect.stringMatching(/fake span/));

    const dead = [...chain.route];
    dead[1] = { ...dead[1]!, endpoint: 'http://127.0.0.1:9' };
    const t2 = await edge.ticket({ route: dead, modelId: model.modelId, promptIds: PROMPT, maxTokens: 3 });
    const res2 = await runJob(chain.url, { signedTicket: t2.signed, promptIds: PROMPT, prefixIds: [] });
    expect(res2.events.at(-1)).toMatchObject({ type: 'error', code: 'upstream_error', agentId: 'agent-1' });
    expect(chain.agents[0]!.core.sessions.size).toBe(0);
  });

  it('a client that disconnects cancels the job on every hop', async () => {
    const model = await fakeModel();
    const { edge, chain } = await setup([fakeSpan(model, [0, 1], { delayMs: 10 }), fakeSpan(model, [1, 3]), fakeSpan(model, [3, 4])]);
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 1000 });
    const ctl = new AbortController();
    const res = await fetch(new URL('/v1/jobs', chain.url), { method: 'POST', body: JSON.stringify({ signedTicket: signed, promptIds: PROMPT, prefixIds: [] }), signal: ctl.signal });
    const reader = res.body!.getReader();
    await reader.read();
    await vi.waitFor(() => expect(chain.agents[2]!.core.sessions.size).toBe(1));
    ctl.abort();
    await vi.waitFor(() => {
      for (const a of chain.agents) expect(a.core.sessions.size).toBe(0);
    });
    expect(chain.agents[0]!.core.metrics.jobs.get({ outcome: 'cancelled' })).toBe(1);
  });

  it('drains on shutdown: refuses new jobs, then ends running ones with error shutdown', async () => {
    const model = await fakeModel();
    const { edge, chain } = await setup([fakeSpan(model, [0, 4], { delayMs: 10 })]);
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 10_000 });
    const running = runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    await vi.waitFor(() => expect(chain.agents[0]!.core.activeJobs).toBe(1));
    const drained = chain.agents[0]!.drain(50);
    const late = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 2 });
    const refused = await runJob(chain.url, { signedTicket: late.signed, promptIds: PROMPT, prefixIds: [] }).catch(() => null);
    if (refused) expect(refused.status).toBe(503);
    const res = await running;
    await drained;
    expect(res.events.at(-1)).toMatchObject({ type: 'error', code: 'shutdown' });
    expect(tokensOf(res.events).length).toBeGreaterThan(0);
  });

  it('a draining middle hop finishes the chains through it and refuses new ones', async () => {
    const model = await fakeModel();
    const { edge, chain } = await setup([fakeSpan(model, [0, 2], { delayMs: 5 }), fakeSpan(model, [2, 4])]);
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 30 });
    const running = runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    await vi.waitFor(() => expect(chain.agents[1]!.core.sessions.size).toBe(1));
    const drained = chain.agents[1]!.drain(10_000);
    const late = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 3 });
    const refused = await runJob(chain.url, { signedTicket: late.signed, promptIds: PROMPT, prefixIds: [] });
    expect(refused.events.at(-1)).toMatchObject({ type: 'error', code: 'shutdown', agentId: 'agent-1' });
    const res = await running;
    expect(res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
    expect(tokensOf(res.events)).toHaveLength(30);
    await drained;
  });

  it('exposes Prometheus metrics and health', async () => {
    const model = await fakeModel();
    const { edge, chain } = await setup([fakeSpan(model, [0, 4])]);
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 5 });
    await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    const text = await (await fetch(new URL('/metrics', chain.url))).text();
    expect(text).toMatch(/^layernet_agent_sessions 0$/m);
    expect(text).toMatch(/^layernet_agent_tokens_generated_total\{role="head"\} 5$/m);
    expect(text).toMatch(/^layernet_agent_jobs_total\{outcome="length"\} 1$/m);
    expect(text).toMatch(/^layernet_agent_errors_total\{code="replayed"\} 1$/m);
    expect(text).toMatch(/^layernet_agent_job_duration_seconds_count 1$/m);
    // One span run per step (prefill + 4 decode steps) of the job that ran.
    expect(text).toMatch(/^layernet_agent_span_duration_seconds_count 5$/m);
    const health = (await (await fetch(new URL('/healthz', chain.url))).json()) as { ok: boolean; modelId: string };
    expect(health).toMatchObject({ ok: true, modelId: model.modelId });
  });
});
