/**
 * `verify: true` against a fake edge serving a real job record: tickets signed with a real edge
 * key and attestation chains signed by real agent keys (protocol/keys.ts, ticket.ts,
 * attestation.ts), so the SDK's checks run for real and each tampering must be caught.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { http, HttpResponse } from 'msw';
import { BASE, server, sseBody } from './sdk-msw.js';
import { AttestationError, JobFoundBadError, LayerNet, isJobFoundBad, type JobAttestation, type JobCheck, type ChatCompletionChunk } from '../../sdk/src/index.js';
import { generateSigningKey, type SigningKey } from '../../protocol/keys.js';
import { signTicket, ticketHash, type JobTicket, type SignedTicket } from '../../protocol/ticket.js';
import { attestationHash, signAttestation, tokenCommitment, type Attestation, type SignedAttestation } from '../../protocol/attestation.js';
import { encodeTokenIds, sha256Hex } from '../../protocol/bytes.js';

beforeAll(() => server.listen({ onUnhandledRequest: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const EOS = 2;
const NUM_LAYERS = 4;
const PROMPT = [1, 5, 6];
const JOB = 'job-verify-1';

interface Agent {
  id: string;
  poolId: string;
  region: string;
  layers: [number, number];
  key: SigningKey;
}

interface AttemptSpec {
  /** Tokens the last hop samples in this attempt, one chunk per token. */
  tokens: number[];
  outcome: 'completed' | 'failed';
}

/** Signs the tickets and chains of a job the way the edge and honest agents do. */
/** Which hops write `outputTopLoc` (agents write it on every hop but the last; older ones on none). */
type TopLocOn = 'none' | 'head' | 'last';

async function buildJob(attemptSpecs: AttemptSpec[], maxTokens = 16, topLoc: TopLocOn = 'head') {
  const edgeKey = await generateSigningKey();
  const modelId = await sha256Hex('model');
  const agents: Agent[] = [
    { id: 'agent-a', poolId: 'pool-1', region: 'eu-west', layers: [0, 2], key: await generateSigningKey() },
    { id: 'agent-b', poolId: 'pool-2', region: 'us-east', layers: [2, 4], key: await generateSigningKey() },
  ];
  const handed: number[] = [];
  const attempts: JobAttestation['attempts'] = [];
  let lastHash: string | null = null;
  let lastTicketHash = '';
  let totalChunks = 0;
  for (const [n, spec] of attemptSpecs.entries()) {
    const ticket: JobTicket = {
      v: 1,
      jobId: n === 0 ? JOB : `${JOB}.${n + 1}`,
      modelId,
      dtype: 'float32',
      route: agents.map((a) => ({ agentId: a.id, layers: a.layers, endpoint: `http://${a.id}.test` })),
      inputHash: await sha256Hex(encodeTokenIds([...PROMPT, ...handed])),
      promptTokens: PROMPT.length,
      prefixTokens: handed.length,
      limits: { maxTokens, deadline: 2_000_000_000_000 },
      sampling: { temperature: 1, topP: 1, topK: 0, seed: 7 },
      stopTokenIds: [EOS],
      nonce: 'nonce-nonce-nonce-' + n,
      issuedAt: 1_700_000_000_000,
      expiresAt: 1_700_000_060_000,
      edgeKeyId: 'edge-1',
    };
    const signed = await signTicket(edgeKey.privateKey, ticket);
    const tHash = await ticketHash(ticket);
    lastTicketHash = tHash;
    const chunks: SignedAttestation[][] = [];
    let prevHash: string | null = null;
    let lastToken: number | null = null;
    for (const [i, token] of spec.tokens.entries()) {
      const step = ticket.prefixTokens + i;
      let input = lastToken === null ? ticket.inputHash : await tokenCommitment([lastToken]);
      const chunk: SignedAttestation[] = [];
      for (const [h, agent] of agents.entries()) {
        const isLast = h === agents.length - 1;
        const output = isLast ? await tokenCommitment([token]) : await sha256Hex(`hidden:${agent.id}:${step}`);
        const att: Attestation = {
          v: 1,
          ticketHash: tHash,
          jobId: ticket.jobId,
          agentId: agent.id,
          modelId,
          hop: h,
          layers: agent.layers,
          steps: [step, step + 1],
          inputCommitment: input,
          outputCommitment: output,
          ...(isLast ? { outputTokenIds: [token] } : {}),
          ...((topLoc === 'head' && !isLast) || (topLoc === 'last' && isLast) ? { outputTopLoc: 'VAEQAEAAAAABAA' + 'A'.repeat(106) } : {}),
          prevHash,
          issuedAt: 1_700_000_000_000 + step,
        };
        chunk.push(await signAttestation(agent.key.privateKey, att));
        prevHash = await attestationHash(att);
        input = output;
      }
      chunks.push(chunk);
      lastToken = token;
      totalChunks++;
      if (token === EOS) break;
      handed.push(token);
    }
    lastHash = prevHash;
    attempts.push({ ticket: signed, chunks, outcome: spec.outcome });
  }
  const record: JobAttestation = { job_id: JOB, model_id: modelId, num_layers: NUM_LAYERS, edge_key_id: 'edge-1', edge_public_key: edgeKey.publicKey, attempts, token_ids: [...handed] };
  const route = { hops: agents.map((a) => ({ agent_id: a.id, pool_id: a.poolId, region: a.region, layers: a.layers })), price: 1, attempts: attempts.length };
  const summary = { job_id: JOB, verified: true, ticket_hash: lastTicketHash, model_id: modelId, chunks: totalChunks, chain_head: lastHash, url: `/v1/jobs/${JOB}/attestation` };
  const usage = { prompt_tokens: PROMPT.length, completion_tokens: handed.length, total_tokens: PROMPT.length + handed.length };
  const completion = {
    id: `chatcmpl-${JOB}`,
    object: 'chat.completion',
    created: 1,
    model: 'tiny',
    system_fingerprint: null,
    choices: [{ index: 0, message: { role: 'assistant', content: handed.map((t) => String.fromCharCode(t)).join(''), refusal: null }, finish_reason: 'stop', logprobs: null }],
    usage,
    route,
    attestation: summary,
  };
  const pools = agents.map((a) => ({
    id: a.poolId,
    name: a.poolId,
    region: a.region,
    agents: [{ id: a.id, public_key: a.key.publicKey, status: 'active', price: 1, reputation: 1, spans: [{ model_id: modelId, layers: a.layers }], last_heartbeat_at: null, queue_depth: 0, ttft_ms: null, per_token_ms: null }],
  }));
  return { edgeKey, agents, record, completion, pools, edgeKeys: { keys: [{ id: 'edge-1', public_key: edgeKey.publicKey }] }, handed };
}

type Job = Awaited<ReturnType<typeof buildJob>>;

/** Serves the job; `recordMisses` 404s before the record exists. */
function serve(job: Job, opts: { recordMisses?: number; stream?: boolean } = {}) {
  const seen = { poolQueries: [] as string[], recordCalls: 0 };
  let misses = opts.recordMisses ?? 0;
  server.use(
    http.post(`${BASE}/v1/chat/completions`, () => {
      if (!opts.stream) return HttpResponse.json(job.completion);
      const c = job.completion;
      const chunk = (content: string | null, extra: Record<string, unknown> = {}) => ({ id: c.id, object: 'chat.completion.chunk', created: 1, model: 'tiny', choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: null }], ...extra });
      const text = c.choices[0]!.message.content;
      const events = [...[...text].map((ch) => chunk(ch)), { ...chunk(null, { route: c.route, attestation: c.attestation }), choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }, { ...chunk(null), choices: [], usage: c.usage }];
      return new HttpResponse(sseBody(events), { headers: { 'content-type': 'text/event-stream', 'x-layernet-job-id': JOB } });
    }),
    http.get(`${BASE}/v1/jobs/:id/attestation`, ({ params }) => {
      seen.recordCalls++;
      if (params.id !== JOB) return HttpResponse.json({ error: { message: 'no such job', type: 'not_found_error', code: 'not_found', param: null } }, { status: 404 });
      if (misses > 0) {
        misses--;
        return HttpResponse.json({ error: { message: 'no such job', type: 'not_found_error', code: 'not_found', param: null } }, { status: 404 });
      }
      return HttpResponse.json(job.record);
    }),
    http.get(`${BASE}/v1/pools`, ({ request }) => {
      const u = new URL(request.url);
      seen.poolQueries.push(u.search);
      const region = u.searchParams.get('region');
      const after = u.searchParams.get('after');
      const data = job.pools.filter((p) => (!region || p.region === region) && (!after || p.id > after));
      return HttpResponse.json({ object: 'list', data });
    }),
    http.get(`${BASE}/v1/edge/keys`, () => HttpResponse.json(job.edgeKeys)),
  );
  return seen;
}

function client(extra: ConstructorParameters<typeof LayerNet>[0] = {}) {
  let t = 0;
  return new LayerNet({ apiKey: 'k', baseURL: BASE, maxRetries: 0, verify: true, now: () => t, sleep: async (ms) => void (t += ms), ...extra });
}

const body = { model: 'tiny', messages: [{ role: 'user' as const, content: 'hi' }] };

async function refusal(job: Job): Promise<AttestationError> {
  serve(job);
  const err = await client()
    .chat.completions.create(body)
    .then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(AttestationError);
  return err as AttestationError;
}

describe('SDK verify', () => {
  it('passes an honest job and reports what it checked', async () => {
    const job = await buildJob([{ tokens: [100, 101, 102, EOS], outcome: 'completed' }]);
    const seen = serve(job);
    const completion = await client().chat.completions.create(body);
    expect(completion.verification).toEqual({
      jobId: JOB,
      verified: true,
      attempts: 1,
      chunks: 4,
      tokenIds: [100, 101, 102],
      chainHead: job.completion.attestation.chain_head,
      edgeKeyId: 'edge-1',
      agents: ['agent-a', 'agent-b'],
    });
    // Keys were looked up by the route's regions first.
    expect(seen.poolQueries[0]).toContain('region=eu-west');
  });

  it('passes a job of older agents (no outputTopLoc): the field is optional', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }], 16, 'none');
    serve(job);
    expect((await client().chat.completions.create(body)).verification?.verified).toBe(true);
  });

  it('refuses an outputTopLoc changed after signing, and one on the last hop', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    job.record.attempts[0]!.chunks[1]![0]!.att.outputTopLoc = 'A'.repeat(120);
    expect((await refusal(job)).message).toMatch(/signature/);
    const last = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }], 16, 'last');
    expect((await refusal(last)).message).toMatch(/last hop commits to tokens and hidden states/);
  });

  it('passes a failover job: the second attempt resumes after the tokens already handed on', async () => {
    const job = await buildJob([
      { tokens: [100, 101], outcome: 'failed' },
      { tokens: [102, 103, EOS], outcome: 'completed' },
    ]);
    serve(job);
    const completion = await client().chat.completions.create(body);
    expect(completion.verification?.attempts).toBe(2);
    expect(completion.verification?.tokenIds).toEqual([100, 101, 102, 103]);
  });

  it('waits for a job record the edge has not written yet', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    const seen = serve(job, { recordMisses: 2 });
    const completion = await client().chat.completions.create(body);
    expect(completion.verification?.verified).toBe(true);
    expect(seen.recordCalls).toBe(3);
  });

  it('refuses when the record never appears', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    serve(job, { recordMisses: 1_000 });
    const err = await client().chat.completions.create(body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AttestationError);
    expect((err as AttestationError).reason).toBe('unavailable');
  });

  it('refuses a tampered token in the record', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    job.record.token_ids[1] = 120;
    expect((await refusal(job)).reason).toBe('token_mismatch');
  });

  it('refuses a token changed inside a signed attestation', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    job.record.attempts[0]!.chunks[1]![1]!.att.outputTokenIds = [120];
    const err = await refusal(job);
    expect(err.reason).toBe('bad_signature');
    expect(err.context.agentId).toBe('agent-b');
  });

  it('refuses a forged signature', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    const sig = job.record.attempts[0]!.chunks[0]![0]!.sig;
    job.record.attempts[0]!.chunks[0]![0]!.sig = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
    const err = await refusal(job);
    expect(err.reason).toBe('bad_signature');
    expect(err.context.agentId).toBe('agent-a');
  });

  it('refuses a chain signed with a key that is not the registered one', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    job.pools[1]!.agents[0]!.public_key = (await generateSigningKey()).publicKey;
    expect((await refusal(job)).reason).toBe('bad_signature');
  });

  it('refuses an agent the registry does not list', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    job.pools = job.pools.slice(0, 1);
    const err = await refusal(job);
    expect(err.reason).toBe('unknown_key');
    expect(err.context.agentId).toBe('agent-b');
  });

  it('refuses a ticket whose signature does not verify against the published edge key', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    job.edgeKeys = { keys: [{ id: 'edge-1', public_key: (await generateSigningKey()).publicKey }] };
    expect((await refusal(job)).reason).toBe('bad_ticket_signature');
  });

  it('refuses a ticket signed by an edge key that is not published', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    job.edgeKeys = { keys: [{ id: 'edge-2', public_key: job.edgeKey.publicKey }] };
    expect((await refusal(job)).reason).toBe('unknown_edge_key');
  });

  it('refuses a modified ticket (limits changed after signing)', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    (job.record.attempts[0]!.ticket as SignedTicket).ticket.limits.maxTokens = 999;
    expect((await refusal(job)).reason).toBe('bad_ticket_signature');
  });

  it('refuses a resumed attempt whose prefix skips handed-on tokens', async () => {
    const job = await buildJob([
      { tokens: [100, 101], outcome: 'failed' },
      { tokens: [102, EOS], outcome: 'completed' },
    ]);
    // The first attempt's record loses its last chunk: the second resumes after 2 tokens, 1 is attested.
    job.record.attempts[0]!.chunks.pop();
    expect((await refusal(job)).reason).toBe('wrong_prefix');
  });

  it('refuses a summary whose chain head is not the verified one', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    job.completion.attestation.chain_head = 'a'.repeat(64);
    expect((await refusal(job)).reason).toBe('summary_mismatch');
  });

  it('refuses usage that bills more tokens than were attested', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    job.completion.usage.completion_tokens = 5;
    expect((await refusal(job)).reason).toBe('usage_mismatch');
  });

  it('refuses a route in the response that is not the ticket route', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    job.completion.route.hops[0]!.agent_id = 'agent-z';
    expect((await refusal(job)).reason).toBe('route_mismatch');
  });

  it('with decode, refuses text that is not the decoding of the attested tokens', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    const decode = (ids: readonly number[]) => ids.map((t) => String.fromCharCode(t)).join('');
    serve(job);
    const ok = await client({ verify: { decode } }).chat.completions.create(body);
    expect(ok.verification?.verified).toBe(true);
    job.completion.choices[0]!.message.content = 'zz';
    const err = await client({ verify: { decode } }).chat.completions.create(body).catch((e: unknown) => e);
    expect((err as AttestationError).reason).toBe('text_mismatch');
  });

  it('streams: verifies at the end, after the tokens were yielded', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    serve(job, { stream: true });
    const stream = await client().chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
    expect(await stream.toText()).toBe('de');
    expect(stream.verification?.tokenIds).toEqual([100, 101]);

    job.record.token_ids = [100, 120];
    serve(job, { stream: true });
    const bad = await client().chat.completions.create({ ...body, stream: true });
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of bad) got.push(c.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(got.join('')).toBe('de');
    expect((err as AttestationError).reason).toBe('token_mismatch');
  });

  it("streams with verifyStream: 'buffer' yield nothing unless verified", async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    job.record.token_ids = [100, 120];
    serve(job, { stream: true });
    const stream = await client({ verifyStream: 'buffer' }).chat.completions.create({ ...body, stream: true });
    const got: ChatCompletionChunk[] = [];
    const err = await (async () => {
      for await (const c of stream) got.push(c);
    })().catch((e: unknown) => e);
    expect(got).toEqual([]);
    expect(err).toBeInstanceOf(AttestationError);

    const honest = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    serve(honest, { stream: true });
    const ok = await client({ verifyStream: 'buffer' }).chat.completions.create({ ...body, stream: true });
    expect(await ok.toText()).toBe('de');
    expect(ok.verification?.verified).toBe(true);
  });

  it('jobs.verify re-checks a job by id', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    serve(job);
    const report = await client({ verify: false }).jobs.verify(JOB);
    expect(report.tokenIds).toEqual([100]);
  });
});

describe('SDK verify fails closed', () => {
  it('an unreachable key list is an AttestationError with the cause attached', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    serve(job);
    server.use(http.get(`${BASE}/v1/edge/keys`, () => HttpResponse.json({ error: { message: 'down', type: 'server_error', code: 'internal_error', param: null } }, { status: 500 })));
    const err = (await client().chat.completions.create(body).catch((e: unknown) => e)) as AttestationError;
    expect(err).toBeInstanceOf(AttestationError);
    expect(err.reason).toBe('unavailable');
    expect((err.cause as Error).name).toBe('InternalServerError');
  });

  it('pinned keys replace the registry and the edge key list', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    const seen = serve(job);
    server.use(http.get(`${BASE}/v1/edge/keys`, () => HttpResponse.error()));
    const agentKeys = Object.fromEntries(job.agents.map((a) => [a.id, a.key.publicKey]));
    const ok = await client({ verify: { agentKeys, edgeKeys: { 'edge-1': job.edgeKey.publicKey } } }).chat.completions.create(body);
    expect(ok.verification?.verified).toBe(true);
    expect(seen.poolQueries).toEqual([]);
    const wrong = { ...agentKeys, 'agent-a': (await generateSigningKey()).publicKey };
    const err = await client({ verify: { agentKeys: wrong, edgeKeys: { 'edge-1': job.edgeKey.publicKey } } }).chat.completions.create(body).catch((e: unknown) => e);
    expect((err as AttestationError).reason).toBe('bad_signature');
  });
});

describe('SDK: what the re-execution checks found', () => {
  const upheld = {
    status: 'upheld' as const,
    verdict: { reason: 'sampling_mismatch', detail: 'step 1: returned token 101, the sampler gives 110', step: 1 },
    blame: { attempt: 0, hop: 1, agent_id: 'agent-b' },
    dispute: { id: 'dispute-1', status: 'upheld' as const },
    refunded_micro_usd: 42,
  };

  /** Serves the record with each `check` in turn (the last one repeats); counts the reads. */
  function serveChecks(job: Job, checks: Array<JobCheck | undefined>) {
    serve(job);
    const seen = { reads: 0 };
    server.use(
      http.get(`${BASE}/v1/jobs/:id/attestation`, () => {
        const check = checks[Math.min(seen.reads++, checks.length - 1)];
        return HttpResponse.json(check ? { ...job.record, check } : job.record);
      }),
    );
    return seen;
  }

  it('verify: true reports the outcome with the verified answer (pending right after it)', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    serveChecks(job, [{ status: 'pending' }]);
    const completion = await client().chat.completions.create(body);
    expect(completion.verification?.verified).toBe(true);
    expect(completion.verification?.check).toEqual({ status: 'pending' });
  });

  it('a job found bad fails verification with JobFoundBadError, though its chain checks out', async () => {
    const job = await buildJob([{ tokens: [100, 101, EOS], outcome: 'completed' }]);
    serveChecks(job, [upheld]);
    const err = await client({ verify: false }).jobs.verify(JOB).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFoundBadError);
    expect(err).not.toBeInstanceOf(AttestationError);
    const bad = err as JobFoundBadError;
    expect(bad.jobId).toBe(JOB);
    expect(bad.check).toEqual(upheld);
    expect(bad.blame).toEqual({ attempt: 0, hop: 1, agent_id: 'agent-b' });
    expect(bad.refundedMicroUsd).toBe(42);
    expect(bad.message).toContain('hop 1 (agent agent-b)');
    // A chain that does not check out is still an AttestationError first.
    job.record.token_ids[0] = 120;
    expect(await client({ verify: false }).jobs.verify(JOB).catch((e: unknown) => e)).toBeInstanceOf(AttestationError);
  });

  it('jobs.check waits while pending, then returns the typed outcome; throwIfBad throws it', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    const failed = { status: 'fail' as const, verdict: { reason: 'hidden_mismatch', detail: 'step 0' }, blame: { attempt: 0, hop: 1, agent_id: 'agent-b' }, dispute: { id: 'dispute-1', status: 'open' as const }, refunded_micro_usd: 42 };
    const seen = serveChecks(job, [{ status: 'pending' }, { status: 'pending' }, failed]);
    const check: JobCheck = await client().jobs.check(JOB, { waitMs: 30_000 });
    expect(check).toEqual(failed);
    expect(isJobFoundBad(check)).toBe(true);
    expect(seen.reads).toBe(3);

    serveChecks(job, [failed]);
    const err = await client().jobs.check(JOB, { throwIfBad: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFoundBadError);
    expect((err as JobFoundBadError).check.status).toBe('fail');
  });

  it('jobs.check gives up waiting after waitMs, reads once without it, and reads an older edge as unchecked', async () => {
    const job = await buildJob([{ tokens: [100, EOS], outcome: 'completed' }]);
    let seen = serveChecks(job, [{ status: 'pending' }]);
    expect(await client().jobs.check(JOB, { waitMs: 5_000 })).toEqual({ status: 'pending' });
    expect(seen.reads).toBeGreaterThan(1);
    seen = serveChecks(job, [{ status: 'pending' }]);
    expect(await client().jobs.check(JOB)).toEqual({ status: 'pending' });
    expect(seen.reads).toBe(1);
    serveChecks(job, [undefined]);
    expect(await client().jobs.check(JOB, { throwIfBad: true })).toEqual({ status: 'unchecked' });
    // A passing or dismissed job is not found bad.
    expect([{ status: 'pass' }, { status: 'dismissed' }, { status: 'voided' }].map((c) => isJobFoundBad(c as JobCheck))).toEqual([false, false, false]);
  });
});
