/**
 * Links between hops (pool-agent/server/link.ts): the frame reader that splits a link's byte
 * stream, the ring a decode step takes over links (middle hops do not answer open steps, the last
 * hop's token goes to the head's tap, a chunk is sealed by a seal frame behind its last step, and
 * a payload tampered with on the way is refused there) with the same tokens and verified chunks as POST, errors
 * that travel back up from a later hop, sessions freed when links close, and hostile peers on the
 * upgrade endpoints.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connect } from 'node:net';
import { ChainVerifier } from '../../protocol/attestation.js';
import type { JobEvent } from '../../protocol/agent-api.js';
import { decodeFrame, encodeFrame, FrameError, FrameReader, framePayloadAs } from '../../protocol/frame.js';
import { startEvilProxy } from '../support/evil-proxy.js';
import type { ChunkingPolicy, SamplingParams } from '../../protocol/ticket.js';
import { dialLink, LINK_HOP_HEADER, LINK_PATH, LINK_TICKET_HEADER, LinkError, TAP_JOB_HEADER, TAP_PATH, TAP_SIGNATURE_HEADER, TAP_TICKET_HEADER } from '../../pool-agent/server/link.js';
import { toBase64Url, utf8 } from '../../protocol/bytes.js';
import type { SignedTicket } from '../../protocol/ticket.js';
import { tapMessage } from '../../protocol/agent-api.js';
import type { AgentServer } from '../../pool-agent/server/app.js';
import { linkPool } from '../../pool-agent/server/link-pool.js';
import { fakeModel, fakeSpan, type FakeModel } from '../support/fake-span.js';
import { createTestEdge, runJob, startChain, tokensOf, type InProcessChain, type TestEdge } from '../support/agents.js';

const PROMPT = [1, 17, 33, 5, 9];
const CHUNKS: ChunkingPolicy = { maxSteps: 4, maxDelayMs: 60_000 };
const SAMPLED: SamplingParams = { temperature: 1.1, topP: 0.95, topK: 0, seed: 5 };
type Chunk = Extract<JobEvent, { type: 'chunk' }>;
/** A signature by `agent`'s own key (the agent's crypto, as it signs attestations). */
const signBytesSync = (agent: AgentServer, message: string) => (agent.core as unknown as { crypto: { sign(b: Uint8Array): string } }).crypto.sign(new TextEncoder().encode(message));
/** The request headers that open a link for `signed` to hop `hop` (as RemoteStage sends them). */
const linkHeaders = (signed: SignedTicket, hop: number) => ({ [LINK_TICKET_HEADER]: toBase64Url(utf8(JSON.stringify(signed))), [LINK_HOP_HEADER]: String(hop) });

describe('FrameReader', () => {
  const frames = [
    encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, 3, 4], meta: { a: 1 }, payload: Float32Array.from({ length: 12 }, (_, i) => i / 3) }),
    encodeFrame({ kind: 'close', meta: { jobId: 'j' } }),
    encodeFrame({ kind: 'tokens', dtype: 'int32', dims: [2], meta: { attestations: [], tokenIds: [4, 5] }, payload: Int32Array.from([4, 5]) }),
  ];
  const stream = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0));
  frames.reduce((offset, f) => (stream.set(f, offset), offset + f.byteLength), 0);

  it('gives back the same frames however the stream is cut', () => {
    for (let cut = 1; cut <= stream.byteLength; cut++) {
      const reader = new FrameReader({ maxPayloadBytes: 1024 });
      const out: Uint8Array[] = [];
      for (let i = 0; i < stream.byteLength; i += cut) out.push(...reader.push(stream.subarray(i, i + cut)));
      expect(out.map((f) => Buffer.from(f).toString('hex'))).toEqual(frames.map((f) => Buffer.from(f).toString('hex')));
      expect(reader.pending).toBe(0);
    }
    // Every frame still decodes on its own.
    const reader = new FrameReader({ maxPayloadBytes: 1024 });
    expect(reader.push(stream).map((f) => decodeFrame(f, { maxPayloadBytes: 1024 }).kind)).toEqual(['forward', 'close', 'tokens']);
  });

  it('refuses a bad or oversized header before buffering the body', () => {
    const reader = new FrameReader({ maxPayloadBytes: 16 });
    // The header of a 48-byte tensor: refused from its first 24 bytes.
    expect(() => reader.push(frames[0]!.subarray(0, 24))).toThrow(FrameError);
    const garbage = new FrameReader({ maxPayloadBytes: 1024 });
    expect(() => garbage.push(new TextEncoder().encode('GET / HTTP/1.1\r\n'))).toThrow(/not a layernet frame/);
    // A header promising a 2^32-element tensor is refused on the spot.
    const huge = new Uint8Array(frames[0]!.subarray(0, 24));
    new DataView(huge.buffer).setUint32(16, 0xffff_ffff, true);
    expect(() => new FrameReader({ maxPayloadBytes: 1 << 30 }).push(huge)).toThrow(/exceeds/);
  });
});

describe('a chain of 3 over links', () => {
  let model: FakeModel;
  let edge: TestEdge;
  let linked: InProcessChain;
  let posted: InProcessChain;

  beforeAll(async () => {
    model = await fakeModel({ numLayers: 4 });
    edge = await createTestEdge();
    const layout: [number, number][] = [[0, 1], [1, 3], [3, 4]];
    linked = await startChain({ edge, spans: layout.map((l) => fakeSpan(model, l)), agentIdPrefix: 'ln' });
    posted = await startChain({ edge, spans: layout.map((l) => fakeSpan(model, l)), agentIdPrefix: 'ps', agentOptions: (i) => (i === 0 ? { hopTransport: 'post' } : {}) });
  });
  afterAll(async () => {
    await Promise.all([linked?.close(), posted?.close()]);
  });

  async function run(chain: InProcessChain, maxTokens: number, sampling: SamplingParams = SAMPLED, signal?: AbortSignal, chunking: ChunkingPolicy | null = CHUNKS) {
    const { signed, hash } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens, sampling, ...(chunking ? { patch: { chunking } } : {}) });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] }, signal);
    const chunks = res.events.filter((e): e is Chunk => e.type === 'chunk');
    const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: 4, keys: chain.publicKeys });
    const verdicts = [];
    for (const c of chunks) verdicts.push(await verifier.verifyChunk(c.attestations));
    return { res, chunks, verdicts };
  }

  it('gives the same tokens and verified chunks as POST, and middle hops answer only the steps that seal', async () => {
    const middle = linked.agents[1]!.core;
    const last = linked.agents[2]!.core;
    const answered = vi.spyOn(middle, 'handleLinkFrame');
    const posts = [vi.spyOn(middle, 'handleFrame'), vi.spyOn(last, 'handleFrame')];
    const viaLink = await run(linked, 11);
    const viaPost = await run(posted, 11);
    expect(viaLink.res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
    expect(tokensOf(viaLink.res.events)).toEqual(tokensOf(viaPost.res.events));
    expect(viaLink.chunks.map((c) => c.steps)).toEqual([[0, 1], [1, 5], [5, 9], [9, 11]]);
    expect(viaLink.verdicts.every((v) => v.ok)).toBe(true);
    // 11 steps went over the middle hop's link, each decode step unsigned: the three chunks after
    // the prefill were sealed by a seal frame behind their last step. Only the prefill and the
    // seals were answered on it.
    const frames = answered.mock.calls.map(([bytes]) => decodeFrame(bytes, { maxPayloadBytes: 1 << 20 }));
    expect(frames.map((f) => f.kind)).toEqual([...Array<string>(5).fill('forward'), 'seal', ...Array<string>(4).fill('forward'), 'seal', 'forward', 'forward', 'seal', 'close']);
    expect(frames.filter((f) => f.kind === 'forward' && (f.meta as { prev?: unknown }).prev !== undefined)).toHaveLength(1);
    const answers = await Promise.all(answered.mock.results.map((r) => r.value as Promise<Uint8Array | null>));
    expect(answers.filter((a) => a !== null)).toHaveLength(1 + 3 + 1);
    for (const spy of posts) expect(spy).not.toHaveBeenCalled();
    answered.mockRestore();
    for (const spy of posts) spy.mockRestore();
    await vi.waitFor(() => expect(linked.agents.map((a) => a.core.sessions.size)).toEqual([0, 0, 0]));
  });

  it('a ticket without a chunking policy takes the ring too: every step is a chunk of its own, sealed behind it', async () => {
    const middle = linked.agents[1]!.core;
    const answered = vi.spyOn(middle, 'handleLinkFrame');
    const viaLink = await run(linked, 5, SAMPLED, undefined, null);
    const viaPost = await run(posted, 5, SAMPLED, undefined, null);
    expect(viaLink.res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
    expect(tokensOf(viaLink.res.events)).toEqual(tokensOf(viaPost.res.events));
    expect(viaLink.chunks.map((c) => c.steps)).toEqual([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]);
    expect(viaLink.verdicts.every((v) => v.ok)).toBe(true);
    const frames = answered.mock.calls.map(([bytes]) => decodeFrame(bytes, { maxPayloadBytes: 1 << 20 }).kind);
    expect(frames).toEqual(['forward', 'forward', 'seal', 'forward', 'seal', 'forward', 'seal', 'forward', 'seal', 'close']);
    answered.mockRestore();
    await vi.waitFor(() => expect(linked.agents.map((a) => a.core.sessions.size)).toEqual([0, 0, 0]));
  });

  it("starts the head's next run while a sealed chunk's attestations are still coming back up the chain", async () => {
    // The head's span logs each run; the job's events are read straight from the head's core.
    const log: string[] = [];
    const head = fakeSpan(model, [0, 1]);
    const open = head.openSession.bind(head);
    head.openSession = () => {
      const session = open();
      const forward = session.forward.bind(session);
      let run = 0;
      session.forward = (input, options) => {
        log.push(`run ${run++}`);
        return forward(input, options);
      };
      return session;
    };
    const chain = await startChain({ edge, spans: [head, fakeSpan(model, [1, 3]), fakeSpan(model, [3, 4])], agentIdPrefix: 'ov' });
    try {
      const { signed, hash } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 11, sampling: SAMPLED, patch: { chunking: CHUNKS } });
      const job = await chain.agents[0]!.core.prepareJob({ signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
      const events: JobEvent[] = [];
      for await (const ev of job.events()) {
        events.push(ev);
        if (ev.type === 'chunk') log.push(`chunk ${ev.steps[0]}-${ev.steps[1]}`);
      }
      expect(events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
      // The prefill's chunk goes out before step 1 (no tap yet); the chunk sealed at step 4 after
      // step 5 has started, the one sealed at step 8 after step 9 has; the last at the end.
      expect(log).toEqual(['run 0', 'chunk 0-1', 'run 1', 'run 2', 'run 3', 'run 4', 'run 5', 'chunk 1-5', 'run 6', 'run 7', 'run 8', 'run 9', 'chunk 5-9', 'run 10', 'chunk 9-11']);
      const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: 4, keys: chain.publicKeys });
      for (const ev of events) if (ev.type === 'chunk') expect((await verifier.verifyChunk(ev.attestations)).ok).toBe(true);
      expect(tokensOf(events)).toEqual(tokensOf((await run(posted, 11)).res.events));
    } finally {
      await chain.close();
    }
  });

  it('a payload changed on its way at the step that closes a chunk is refused at the seal behind it: bad_input from the hop that got it, no chunk of it sent', async () => {
    const chain = await startChain({ edge, spans: [[0, 1], [1, 3], [3, 4]].map((l) => fakeSpan(model, l as [number, number])), agentIdPrefix: 'tm' });
    const proxy = await startEvilProxy();
    try {
      proxy.target = chain.route[1]!.endpoint;
      const route = chain.route.map((h, i) => (i === 1 ? { ...h, endpoint: proxy.url } : h));
      const seen: string[] = [];
      proxy.tamper = {
        forwardRequest(bytes) {
          const frame = decodeFrame(bytes, { maxPayloadBytes: 1 << 20 });
          const steps = (frame.meta as { steps?: [number, number]; chunk?: [number, number] }).steps ?? (frame.meta as { chunk?: [number, number] }).chunk;
          seen.push(`${frame.kind} ${steps?.join('-') ?? ''}`);
          // Step 4 closes the chunk [1, 5): it goes unsigned, the seal follows it.
          if (frame.kind !== 'forward' || steps?.[0] !== 4) return bytes;
          const data = framePayloadAs(frame) as Float32Array;
          data[0] = data[0]! + 1;
          return encodeFrame({ kind: 'forward', dtype: frame.dtype, dims: frame.dims, meta: frame.meta, payload: data });
        },
      };
      const { signed } = await edge.ticket({ route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 11, sampling: SAMPLED, patch: { chunking: CHUNKS } });
      const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
      expect(seen).toContain('forward 4-5');
      expect(seen).toContain('seal 1-5');
      expect(res.events.filter((e) => e.type === 'chunk').map((e) => (e as Chunk).steps)).toEqual([[0, 1]]);
      // Hop 1 ran step 4 (unchecked, as every step inside a chunk) but signed nothing of [1, 5).
      expect(res.events.at(-1)).toMatchObject({ type: 'error', code: 'bad_input', agentId: chain.route[1]!.agentId, message: expect.stringContaining('refuses steps [1, 5)') });
      await vi.waitFor(() => expect(chain.agents.map((a) => a.core.sessions.size)).toEqual([0, 0, 0]));
    } finally {
      await proxy.close();
      await chain.close();
    }
  });

  it('a client gone mid-job frees the sessions down the chain (the links close)', async () => {
    const ctl = new AbortController();
    const slow = await startChain({
      edge,
      spans: [fakeSpan(model, [0, 1], { delayMs: 20 }), fakeSpan(model, [1, 3]), fakeSpan(model, [3, 4])],
      agentIdPrefix: 'gone',
    });
    try {
      const running = run(slow, 10_000, SAMPLED, ctl.signal).catch(() => null);
      await vi.waitFor(() => expect(slow.agents[2]!.core.sessions.size).toBe(1));
      ctl.abort();
      await running;
      await vi.waitFor(() => expect(slow.agents.map((a) => a.core.sessions.size)).toEqual([0, 0, 0]));
    } finally {
      await slow.close();
    }
  });

  /** A chain of 3 whose hop `failing` throws at its `failAtCall`-th step: the job's last event and what each hop still holds. */
  async function failingRun(prefix: string, failing: number, failAtCall: number) {
    const layout: [number, number][] = [[0, 1], [1, 3], [3, 4]];
    const chain = await startChain({ edge, spans: layout.map((l, i) => fakeSpan(model, l, i === failing ? { failAtCall } : {})), agentIdPrefix: prefix });
    try {
      const r = await run(chain, 8);
      // The prefill (a chunk of its own) came through; the open chunk after it is never sent.
      expect(r.chunks.map((c) => c.steps)).toEqual([[0, 1]]);
      await vi.waitFor(() => expect(chain.agents.map((a) => a.core.sessions.size)).toEqual([0, 0, 0]));
      return r.res.events.at(-1);
    } finally {
      await chain.close();
    }
  }

  it('an error at the last hop on an open step reaches the head, and every session is freed', async () => {
    // Step 2 (open) fails at hop 2: the head, waiting on its tap, hears it there.
    expect(await failingRun('fl', 2, 2)).toMatchObject({ type: 'error', code: 'internal_error', agentId: 'fl-2' });
  });

  it('a middle hop failing on an open step is the one named, not the last hop whose tap its failure closes', async () => {
    expect(await failingRun('fm', 1, 3)).toMatchObject({ type: 'error', code: 'internal_error', agentId: 'fm-1' });
  });

  it('refuses a tap not signed by the head, so no other hop can take the tokens', async () => {
    const ctl = new AbortController();
    const slow = await startChain({ edge, spans: [fakeSpan(model, [0, 1], { delayMs: 20 }), fakeSpan(model, [1, 3]), fakeSpan(model, [3, 4])], agentIdPrefix: 'st' });
    try {
      const { signed, hash } = await edge.ticket({ route: slow.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 10_000, sampling: SAMPLED, patch: { chunking: CHUNKS } });
      const running = runJob(slow.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] }, ctl.signal).catch(() => null);
      await vi.waitFor(() => expect(slow.agents[2]!.core.sessions.size).toBe(1));
      const url = new URL(TAP_PATH, slow.agents[2]!.url).toString();
      const headers = { [TAP_JOB_HEADER]: signed.ticket.jobId, [TAP_TICKET_HEADER]: hash };
      // The middle hop knows the job id and ticket hash, but cannot sign as the head.
      const forged = signBytesSync(slow.agents[1]!, tapMessage(signed.ticket.jobId, hash));
      for (const signature of ['', forged]) {
        await expect(dialLink(url, { timeoutMs: 5_000, maxPayloadBytes: 1024, headers: { ...headers, [TAP_SIGNATURE_HEADER]: signature } })).rejects.toMatchObject({ status: 401, agentCode: 'invalid_signature' });
      }
      // The head's own tap is in place and the job goes on.
      expect(slow.agents[2]!.core.sessions.get(signed.ticket.jobId)?.tap).toBeDefined();
      ctl.abort();
      await running;
    } finally {
      await slow.close();
    }
  });

  it('refuses a tap for a job it does not hold, and a wrong upgrade', async () => {
    const last = linked.agents[2]!;
    const tap = dialLink(new URL(TAP_PATH, last.url).toString(), {
      timeoutMs: 5_000,
      maxPayloadBytes: 1024,
      headers: { [TAP_JOB_HEADER]: 'job-nope', [TAP_TICKET_HEADER]: '0'.repeat(64) },
    });
    await expect(tap).rejects.toMatchObject({ code: 'refused', status: 404, agentCode: 'unknown_session' });
    const other = await fetch(new URL(LINK_PATH, last.url), { headers: { connection: 'upgrade', upgrade: 'websocket' } }).catch((e: unknown) => e);
    expect(other instanceof Response ? other.status : 0).not.toBe(101);
  });

  it('answers a bad frame on a link with an error frame, closes a link that sends garbage, and keeps serving', async () => {
    const middle = linked.agents[1]!;
    const { signed } = await edge.ticket({ route: linked.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 4 });
    const link = await dialLink(new URL(LINK_PATH, middle.url).toString(), { timeoutMs: 5_000, maxPayloadBytes: 1 << 20, headers: linkHeaders(signed, 1) });
    const answer = decodeFrame(await link.request(encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, 1, 8], meta: { hop: 'x' }, payload: new Float32Array(8) }), 5_000), { maxPayloadBytes: 1 << 20 });
    expect(answer.kind).toBe('error');
    expect(answer.meta).toMatchObject({ code: 'bad_frame' });
    // Still open: a second bad frame gets its own answer.
    const again = decodeFrame(await link.request(encodeFrame({ kind: 'tokens', meta: null }), 5_000), { maxPayloadBytes: 1 << 20 });
    expect(again.meta).toMatchObject({ code: 'bad_frame' });
    // A peer sending far ahead is paused, not dropped: every frame is answered, in order.
    const ahead = Array.from({ length: 40 }, (_, i) => link.request(encodeFrame({ kind: 'close', meta: { jobId: `job-${i}`, ticketHash: '0'.repeat(64), hop: 1 } }), 5_000));
    const closes = await Promise.all(ahead);
    expect(closes.map((b) => decodeFrame(b, { maxPayloadBytes: 0 }).meta)).toEqual(Array(40).fill({ closed: false }));
    link.close();

    // Raw garbage after the upgrade: the agent drops that connection.
    const garbageTicket = await edge.ticket({ route: linked.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 4 });
    const port = Number(new URL(middle.url).port);
    const closed = await new Promise<string>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        const headers = Object.entries(linkHeaders(garbageTicket.signed, 1)).map(([k, v]) => `${k}: ${v}\r\n`).join('');
        socket.write(`GET ${LINK_PATH} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: layernet-link/1\r\n${headers}\r\n`);
        socket.write('this is not a frame at all');
      });
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
      socket.on('close', () => resolve(text));
      socket.on('error', () => undefined);
    });
    expect(closed).toMatch(/^HTTP\/1.1 101/);
    // The agents still serve a whole job.
    const r = await run(linked, 6);
    expect(r.res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
    expect(r.verdicts.every((v) => v.ok)).toBe(true);
  });

  it('closes a link that carries no session once it has been idle for the session idle time, a pooled one too', async () => {
    const quick = await startChain({ edge, spans: [fakeSpan(model, [0, 2]), fakeSpan(model, [2, 4])], agentIdPrefix: 'idle', agentOptions: () => ({ limits: { idleMs: 300 } }) });
    try {
      const { signed } = await edge.ticket({ route: quick.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 4 });
      const link = await dialLink(new URL(LINK_PATH, quick.agents[1]!.url).toString(), { timeoutMs: 5_000, maxPayloadBytes: 1024, headers: linkHeaders(signed, 1) });
      expect(link.error).toBeNull();
      await vi.waitFor(() => expect(link.error?.code).toBe('closed'), { timeout: 3_000 });
      // So does a link kept for the next job: it leaves the pool, and the next job opens another.
      linkPool.closeAll();
      const first = await run(quick, 3);
      await vi.waitFor(() => expect(linkPool.size).toBe(1));
      await vi.waitFor(() => expect(linkPool.size).toBe(0), { timeout: 3_000 });
      const second = await run(quick, 3);
      expect(tokensOf(second.res.events)).toEqual(tokensOf(first.res.events));
      expect(second.verdicts.every((v) => v.ok)).toBe(true);
    } finally {
      await quick.close();
    }
  });

  it('keeps a link whose job ended cleanly for the next job to the same hop: no new handshake, same tokens, verified chunks', async () => {
    const upgrades = linked.agents.map((a) => {
      let n = 0;
      a.server.on('upgrade', (req: { url?: string }) => {
        if (new URL(req.url ?? '/', 'http://agent').pathname === LINK_PATH) n++;
      });
      return () => n;
    });
    linkPool.closeAll();
    const first = await run(linked, 7);
    // Head -> middle and middle -> last wait in the pool once the close frames are answered.
    await vi.waitFor(() => expect(linkPool.size).toBe(2));
    expect(upgrades.map((n) => n())).toEqual([0, 1, 1]);
    const kept = () => linked.agents.map((a) => a.core.metrics.links.get({ kept: 'true' }));
    const keptBefore = kept();
    const second = await run(linked, 7);
    expect(upgrades.map((n) => n())).toEqual([0, 1, 1]);
    // The head and the middle hop each took a kept link (layernet_agent_links_total{kept="true"}).
    expect(kept().map((n, i) => n - keptBefore[i]!)).toEqual([1, 1, 0]);
    expect(second.res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
    expect(tokensOf(second.res.events)).toEqual(tokensOf(first.res.events));
    expect(second.verdicts.every((v) => v.ok)).toBe(true);
    await vi.waitFor(() => expect(linked.agents.map((a) => a.core.sessions.size)).toEqual([0, 0, 0]));
    await vi.waitFor(() => expect(linkPool.size).toBe(2));
  });

  it('a kept link the agent closed before it read the opening frame: the job opens a new link and runs', async () => {
    const { createServer } = await import('node:http');
    // Stands in for a kept link that the agent dropped as the next job sent on it: it upgrades,
    // then closes on the first bytes without reading them.
    const dropped: number[] = [];
    const gone = createServer();
    gone.on('upgrade', (_req, socket) => {
      socket.on('error', () => undefined);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: layernet-link/1\r\nconnection: Upgrade\r\n\r\n`);
      socket.once('data', (c: Buffer) => {
        dropped.push(c.byteLength);
        socket.destroy();
      });
    });
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', () => r()));
    try {
      linkPool.closeAll();
      const stale = await dialLink(`http://127.0.0.1:${(gone.address() as { port: number }).port}${LINK_PATH}`, { timeoutMs: 5_000, maxPayloadBytes: 1024 });
      linkPool.give(new URL(LINK_PATH, linked.agents[1]!.url).toString(), stale);
      expect(linkPool.size).toBe(1);
      const r = await run(linked, 5);
      expect(dropped).toHaveLength(1);
      expect(r.res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
      expect(r.verdicts.every((v) => v.ok)).toBe(true);
    } finally {
      await new Promise<void>((r) => gone.close(() => r()));
    }
  });

  it('opens a link only for a job whose signed ticket names this agent at that hop, one link per ticket', async () => {
    const middle = linked.agents[1]!;
    const url = new URL(LINK_PATH, middle.url).toString();
    const open = (headers?: Record<string, string>) => dialLink(url, { timeoutMs: 5_000, maxPayloadBytes: 1 << 20, ...(headers ? { headers } : {}) });
    const { signed } = await edge.ticket({ route: linked.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 4 });
    await expect(open()).rejects.toMatchObject({ status: 401, agentCode: 'invalid_ticket' });
    await expect(open({ [LINK_TICKET_HEADER]: 'not base64url!', [LINK_HOP_HEADER]: '1' })).rejects.toMatchObject({ status: 401, agentCode: 'invalid_ticket' });
    await expect(open({ ...linkHeaders(signed, 1), [LINK_HOP_HEADER]: 'one' })).rejects.toMatchObject({ status: 400, agentCode: 'invalid_request' });
    // The middle agent is hop 1 of this route, not hop 2; a ticket whose signature is not the edge's is refused.
    await expect(open(linkHeaders(signed, 2))).rejects.toMatchObject({ status: 403, agentCode: 'wrong_hop' });
    const forged: SignedTicket = { ...signed, ticket: { ...signed.ticket, limits: { ...signed.ticket.limits, maxTokens: 9_999 } } };
    await expect(open(linkHeaders(forged, 1))).rejects.toMatchObject({ status: 401, agentCode: 'invalid_ticket' });
    const link = await open(linkHeaders(signed, 1));
    await expect(open(linkHeaders(signed, 1))).rejects.toMatchObject({ status: 409, agentCode: 'conflict' });
    // The link carries its own job only: an opening frame for another job is refused on it.
    const other = await edge.ticket({ route: linked.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 4 });
    const opening = encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, PROMPT.length, model.manifest.architecture.hiddenSize], meta: { signedTicket: other.signed, hop: 1, steps: [0, 1], open: true, prevHash: '0'.repeat(64) }, payload: new Float32Array(PROMPT.length * model.manifest.architecture.hiddenSize) });
    const answer = decodeFrame(await link.request(opening, 5_000), { maxPayloadBytes: 1 << 20 });
    expect(answer.kind).toBe('error');
    expect(answer.meta).toMatchObject({ code: 'bad_frame', message: expect.stringContaining(`opened for job ${signed.ticket.jobId}`) });
    expect(middle.core.sessions.get(other.signed.ticket.jobId)).toBeUndefined();
    link.close();
    // Once that link is gone, the ticket may open one again.
    await vi.waitFor(async () => (await open(linkHeaders(signed, 1))).close());
  });

  it('takes a later job on a link only once the job it carries has ended there', async () => {
    // A head that posts (a custom fetch) keeps each job's opening frame for hop 1 and delivers
    // nothing: the frames are valid (signed ticket, the head's attestation) and their nonces unspent.
    const captured = new Map<string, Uint8Array>();
    const capture = (async (_url: string, init: RequestInit) => {
      const bytes = new Uint8Array(init.body as Uint8Array);
      const frame = decodeFrame(bytes, { maxPayloadBytes: 64 << 20 });
      const meta = frame.meta as { open?: boolean; signedTicket?: SignedTicket };
      if (frame.kind === 'forward' && meta.open && meta.signedTicket) captured.set(meta.signedTicket.ticket.jobId, bytes);
      return new Response(encodeFrame({ kind: 'error', meta: { code: 'capacity', message: 'held by the test' } }) as BodyInit, { status: 503 });
    }) as unknown as typeof fetch;
    const chain = await startChain({ edge, spans: [fakeSpan(model, [0, 1]), fakeSpan(model, [1, 3]), fakeSpan(model, [3, 4])], agentIdPrefix: 'rb', agentOptions: (i) => (i === 0 ? { fetch: capture } : {}) });
    try {
      const middle = chain.agents[1]!;
      const jobs = [];
      for (let i = 0; i < 2; i++) {
        const t = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 4, patch: { chunking: CHUNKS } });
        await runJob(chain.url, { signedTicket: t.signed, promptIds: PROMPT, prefixIds: [] });
        jobs.push({ ...t, opening: captured.get(t.signed.ticket.jobId)! });
      }
      const [a, b] = jobs as [(typeof jobs)[0], (typeof jobs)[0]];
      expect(a.opening && b.opening).toBeTruthy();
      const link = await dialLink(new URL(LINK_PATH, middle.url).toString(), { timeoutMs: 5_000, maxPayloadBytes: 1 << 20, headers: linkHeaders(a.signed, 1) });
      const ask = async (bytes: Uint8Array) => decodeFrame(await link.request(bytes, 5_000), { maxPayloadBytes: 1 << 20 });
      // Job A runs on the link (its prefill, down to the last hop and back) and stays open there.
      expect((await ask(a.opening)).kind).toBe('tokens');
      expect(middle.core.sessions.get(a.signed.ticket.jobId)).toBeDefined();
      // B's opening frame while A holds a session on the link: refused, nothing opened, nonce unspent.
      const refused = await ask(b.opening);
      expect(refused.meta).toMatchObject({ code: 'bad_frame', message: expect.stringContaining(`opened for job ${a.signed.ticket.jobId}`) });
      expect(middle.core.sessions.get(b.signed.ticket.jobId)).toBeUndefined();
      // Once A is closed there, the link takes B.
      expect((await ask(encodeFrame({ kind: 'close', meta: { jobId: a.signed.ticket.jobId, ticketHash: a.hash, hop: 1 } }))).meta).toEqual({ closed: true });
      expect((await ask(b.opening)).kind).toBe('tokens');
      expect(middle.core.sessions.get(b.signed.ticket.jobId)?.upstream).toBeDefined();
      link.close();
      await vi.waitFor(() => expect(chain.agents.map((x) => x.core.sessions.size)).toEqual([0, 0, 0]));
    } finally {
      await chain.close();
    }
  });

  it('holds at most maxLinks links at once: one more upgrade is refused with capacity and retry-after', async () => {
    const capped = await startChain({ edge, spans: [fakeSpan(model, [0, 2]), fakeSpan(model, [2, 4])], agentIdPrefix: 'cap', agentOptions: () => ({ limits: { maxLinks: 2 } }) });
    try {
      const agent = capped.agents[1]!;
      const url = new URL(LINK_PATH, agent.url).toString();
      const headers = async () => linkHeaders((await edge.ticket({ route: capped.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 4 })).signed, 1);
      const open = async () => dialLink(url, { timeoutMs: 5_000, maxPayloadBytes: 1024, headers: await headers() });
      const held = [await open(), await open()];
      await expect(open()).rejects.toMatchObject({ code: 'refused', status: 503, agentCode: 'capacity' });
      const raw = Object.entries(await headers()).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      const answer = await new Promise<string>((resolve) => {
        const socket = connect(Number(new URL(agent.url).port), '127.0.0.1', () => socket.write(`GET ${LINK_PATH} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: layernet-link/1\r\n${raw}\r\n`));
        let text = '';
        socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
        socket.on('close', () => resolve(text));
        socket.on('error', () => undefined);
      });
      expect(answer).toMatch(/^HTTP\/1.1 503 /);
      expect(answer).toMatch(/\r\nretry-after: 1\r\n/);
      // A slot frees as soon as a link closes (its peer ending its side); the chain still runs a whole job.
      held[0]!.close();
      await vi.waitFor(async () => held.push(await open()));
      for (const l of held) l.close();
      await vi.waitFor(() => expect(agent.core.sessions.size).toBe(0));
      linkPool.closeAll();
      const r = await run(capped, 4);
      expect(r.res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
      expect(r.verdicts.every((v) => v.ok)).toBe(true);
      // The head keeps that job's link: it takes one slot. With the other one taken, a new link
      // makes room by closing the kept one (idle, its job done), not by a refusal.
      await vi.waitFor(() => expect(linkPool.size).toBe(1));
      const other = await open();
      const third = await open();
      await vi.waitFor(() => expect(linkPool.size).toBe(0));
      // Two links that carry no finished job are not given up for a third.
      await expect(open()).rejects.toMatchObject({ status: 503, agentCode: 'capacity' });
      other.close();
      third.close();
      await vi.waitFor(async () => expect((await run(capped, 4)).res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' }));
    } finally {
      await capped.close();
    }
  });

  it('a link keeps a bounded number of frames nobody asked for, then drops the peer', async () => {
    const { createServer } = await import('node:http');
    // A peer that upgrades and then floods frames (as a hostile last hop could flood a tap).
    const flood = createServer();
    const sockets: { destroy(): void }[] = [];
    flood.on('upgrade', (_req, socket) => {
      sockets.push(socket);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: layernet-link/1\r\nconnection: Upgrade\r\n\r\n`);
      const frame = encodeFrame({ kind: 'tokens', dtype: 'int32', dims: [1], meta: { attestations: [], tokenIds: [1] }, payload: Int32Array.of(1) });
      for (let i = 0; i < 200; i++) socket.write(frame);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => flood.listen(0, '127.0.0.1', () => r()));
    try {
      const { port } = flood.address() as { port: number };
      const link = await dialLink(`http://127.0.0.1:${port}${TAP_PATH}`, { timeoutMs: 5_000, maxPayloadBytes: 1024 });
      await vi.waitFor(() => expect(link.error).toMatchObject({ code: 'bad_frame' }));
      // What was kept before is still readable; nothing beyond the bound was.
      let kept = 0;
      while (await link.next(100).then(() => true, () => false)) kept++;
      expect(kept).toBe(64);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => flood.close(() => r()));
    }
  });

  it('LinkError carries what went wrong', () => {
    expect(new LinkError('refused', 'x', 503, 'shutdown')).toMatchObject({ code: 'refused', status: 503, agentCode: 'shutdown' });
  });
});
