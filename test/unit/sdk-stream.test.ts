/**
 * Streams against a real HTTP peer: a node:http server on 127.0.0.1 that writes SSE frames as
 * an edge does, so that aborts and early stops are seen as the peer sees them (its response
 * closes before it finished). msw cannot model that: it hands the client a tee of the mocked
 * body and never ties that body to the request's signal.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { APIConnectionError, APIUserAbortError, BadGatewayError, LayerNet, LayerNetError, Stream, collectText, type ChatCompletionChunk } from '../../sdk/src/index.js';

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  body: string;
  /** Resolves when the connection closed; `finished` tells whether the response was complete. */
  closed: Promise<{ finished: boolean }>;
}

let handle: ((ex: Exchange) => void) | null = null;
const exchanges: Exchange[] = [];
let BASE = '';
const peer: Server = createServer((req, res) => {
  // One request a connection: a pooled socket that a test's end closes would fail the next request.
  res.shouldKeepAlive = false;
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => {
    const closed = new Promise<{ finished: boolean }>((resolve) => res.on('close', () => resolve({ finished: res.writableFinished })));
    const ex: Exchange = { req, res, body: Buffer.concat(parts).toString('utf8'), closed };
    exchanges.push(ex);
    if (handle) handle(ex);
    else res.writeHead(500).end('no handler');
  });
});

beforeAll(async () => {
  await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve));
  BASE = `http://127.0.0.1:${(peer.address() as AddressInfo).port}`;
});
afterEach(() => {
  handle = null;
  for (const ex of exchanges) ex.res.destroy();
  exchanges.length = 0;
});
afterAll(async () => {
  peer.closeAllConnections();
  await new Promise<void>((resolve, reject) => peer.close((err) => (err ? reject(err) : resolve())));
});

const frame = (e: unknown) => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`;
/** Answers every request with these events (then [DONE] unless `done: false`); `hold` leaves the response open. */
function serve(events: unknown[], opts: { done?: boolean; hold?: boolean } = {}): void {
  handle = ({ res }) => {
    res.writeHead(200, headers);
    for (const e of events) res.write(frame(e));
    if (opts.done !== false) res.write(frame('[DONE]'));
    if (!opts.hold) res.end();
  };
}

const client = () => new LayerNet({ apiKey: 'k', baseURL: BASE, maxRetries: 0, sleep: async () => {} });
const body = { model: 'tiny', messages: [{ role: 'user' as const, content: 'hi' }], stream: true as const };
const route = { hops: [{ agent_id: 'a1', pool_id: 'p1', region: 'eu-west', layers: [0, 4] as [number, number] }], price: 0.5, attempts: 1 };
const attestation = { job_id: 'job-1', verified: true, ticket_hash: 'f'.repeat(64), model_id: 'e'.repeat(64), chunks: 2, chain_head: 'd'.repeat(64), url: '/v1/jobs/job-1/attestation' };
const chunk = (content: string | null, extra: Record<string, unknown> = {}) => ({
  id: 'chatcmpl-job-1',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'tiny',
  system_fingerprint: null,
  choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: null, logprobs: null }],
  ...extra,
});
const headers = { 'content-type': 'text/event-stream', 'x-layernet-job-id': 'job-1', 'x-request-id': 'req-s' };

describe('SDK streams', () => {
  it('yields chunks until [DONE] and ignores anything after it; exposes route, usage and job id', async () => {
    const events = [
      chunk(null, { choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null, logprobs: null }] }),
      chunk('Hel'),
      chunk('lo'),
      { ...chunk(null, { route, attestation }), choices: [{ index: 0, delta: {}, finish_reason: 'length', logprobs: null }] },
      { ...chunk(null), choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } },
    ];
    handle = ({ res }) => {
      res.writeHead(200, headers);
      res.write(': keep-alive\n\n');
      for (const e of events) res.write(frame(e));
      res.write(frame('[DONE]'));
      res.write(frame(chunk('AFTER')));
      res.end();
    };
    const stream = await client().chat.completions.create(body);
    expect(stream).toBeInstanceOf(Stream);
    expect(stream.jobId).toBe('job-1');
    expect(stream.requestId).toBe('req-s');
    const got: ChatCompletionChunk[] = [];
    for await (const c of stream) got.push(c);
    expect(got).toHaveLength(5);
    expect(got.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello');
    expect(stream.text).toBe('Hello');
    expect(stream.route).toEqual(route);
    expect(stream.attestation).toEqual(attestation);
    expect(stream.finalUsage).toEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
    const [ex] = exchanges;
    expect(ex?.req.method).toBe('POST');
    expect(ex?.req.url).toBe('/v1/chat/completions');
    expect(ex?.req.headers.accept).toBe('text/event-stream');
    expect(ex?.req.headers.authorization).toBe('Bearer k');
    expect((JSON.parse(ex?.body ?? '{}') as { stream?: boolean }).stream).toBe(true);
  });

  it('stops at [DONE] even when the peer keeps the response open', async () => {
    serve([chunk('a'), chunk('b')], { hold: true });
    expect(await (await client().chat.completions.create(body)).toText()).toBe('ab');
    // The SDK no longer reads the body: the connection is released, not left to the peer.
    expect(await exchanges[0]?.closed).toEqual({ finished: false });
  });

  it('toText and collectText read the whole answer', async () => {
    serve([chunk('a'), chunk('b')]);
    expect(await (await client().chat.completions.create(body)).toText()).toBe('ab');
    expect(await collectText(await client().chat.completions.create(body))).toBe('ab');
  });

  it('a stream can be iterated only once', async () => {
    serve([chunk('a')]);
    const stream = await client().chat.completions.create(body);
    await stream.toText();
    expect(() => stream[Symbol.asyncIterator]()).toThrow(LayerNetError);
  });

  it('throws an in-band error event as the APIError of its code', async () => {
    const inBand = { error: { message: 'agent died', type: 'upstream_error', code: 'upstream_error', param: null } };
    serve([chunk('a'), inBand], { done: false });
    const stream = await client().chat.completions.create(body);
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of stream) got.push(c.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(got).toEqual(['a']);
    expect(err).toBeInstanceOf(BadGatewayError);
    expect((err as BadGatewayError).message).toContain('agent died');
    expect((err as BadGatewayError).requestId).toBe('req-s');
  });

  it('a connection dropped mid-stream is an APIConnectionError, not a silent end', async () => {
    handle = ({ res }) => {
      res.writeHead(200, headers);
      res.write(frame(chunk('a')), () => res.destroy());
    };
    const stream = await client().chat.completions.create(body);
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of stream) got.push(c.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(got).toEqual(['a']);
    expect(err).toBeInstanceOf(APIConnectionError);
  });

  it('aborts the HTTP request when the consumer breaks early', async () => {
    // Two tokens, then the peer would keep the stream open forever.
    serve([chunk('a'), chunk('b')], { done: false, hold: true });
    const stream = await client().chat.completions.create(body);
    for await (const c of stream) {
      expect(c.choices[0]?.delta.content).toBe('a');
      break;
    }
    expect(stream.controller.signal.aborted).toBe(true);
    expect(await exchanges[0]?.closed).toEqual({ finished: false });
  });

  it("the caller's signal aborts a running stream with APIUserAbortError and closes the connection", async () => {
    serve([chunk('a')], { done: false, hold: true });
    const ac = new AbortController();
    const stream = await client().chat.completions.create(body, { signal: ac.signal });
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of stream) {
        got.push(c.choices[0]?.delta.content ?? '');
        ac.abort();
      }
    })().catch((e: unknown) => e);
    expect(got).toEqual(['a']);
    expect(err).toBeInstanceOf(APIUserAbortError);
    expect(await exchanges[0]?.closed).toEqual({ finished: false });
  });

  it('streams text completions', async () => {
    const c = (text: string) => ({ id: 'cmpl-1', object: 'text_completion', created: 1, model: 'tiny', choices: [{ index: 0, text, finish_reason: null, logprobs: null }] });
    serve([c('once '), c('upon')]);
    const stream = await client().completions.create({ model: 'tiny', prompt: 'x', stream: true });
    expect(await stream.toText()).toBe('once upon');
    expect(exchanges[0]?.req.url).toBe('/v1/completions');
  });

  it('fills in route preferences from the request, then the client', async () => {
    serve([chunk('a')]);
    const c = new LayerNet({ apiKey: 'k', baseURL: BASE, route: { sort: 'price' } });
    await (await c.chat.completions.create(body)).toText();
    await (await c.chat.completions.create(body, { route: { sort: 'latency', region: 'eu-west' } })).toText();
    await (await c.chat.completions.create({ ...body, route: { max_price: 1 } }, { route: { sort: 'latency' } })).toText();
    expect(exchanges.map((ex) => (JSON.parse(ex.body) as { route: unknown }).route)).toEqual([{ sort: 'price' }, { sort: 'latency', region: 'eu-west' }, { max_price: 1 }]);
  });
});

/**
 * A `fetch` passed in the options (an in-process app, a proxy) need not tie its response bodies
 * to the request's signal, and a body's cancel may never settle (a tee whose other branch nobody
 * reads). The SDK must neither hang nor miss an abort then.
 */
describe('SDK streams over a fetch that ignores the signal', () => {
  const enc = new TextEncoder();
  /** A body that yields `events` and then stays open; `cancelled` records a cancel reaching it. */
  function holdingBody(events: unknown[]) {
    const seen = { cancelled: false };
    const rs = new ReadableStream<Uint8Array>({
      start(c) {
        for (const e of events) c.enqueue(enc.encode(frame(e)));
      },
      cancel() {
        seen.cancelled = true;
      },
    });
    return { rs, seen };
  }
  const inProcess = (make: () => ReadableStream<Uint8Array>) => {
    const signals: AbortSignal[] = [];
    const fetch = async (_url: string, init: RequestInit) => {
      if (init.signal) signals.push(init.signal);
      return new Response(make(), { headers });
    };
    return { fetch, signals };
  };

  it("the caller's signal still ends the stream with APIUserAbortError and cancels the body", async () => {
    const { rs, seen } = holdingBody([chunk('a'), chunk('b')]);
    const { fetch } = inProcess(() => rs);
    const ac = new AbortController();
    const c = new LayerNet({ apiKey: 'k', baseURL: 'http://in-process.test', maxRetries: 0, fetch });
    const stream = await c.chat.completions.create(body, { signal: ac.signal });
    const got: string[] = [];
    const err = await (async () => {
      for await (const ch of stream) {
        got.push(ch.choices[0]?.delta.content ?? '');
        ac.abort();
      }
    })().catch((e: unknown) => e);
    expect(got).toEqual(['a']);
    expect(err).toBeInstanceOf(APIUserAbortError);
    await expect.poll(() => seen.cancelled).toBe(true);
  });

  it('breaking early returns at once even when the body cancel never settles, and aborts the request', async () => {
    let other: ReadableStream<Uint8Array> | undefined;
    const { fetch, signals } = inProcess(() => {
      const [mine, theirs] = holdingBody([chunk('a'), chunk('b')]).rs.tee();
      other = theirs; // never read nor cancelled: cancelling `mine` alone never settles
      return mine;
    });
    const c = new LayerNet({ apiKey: 'k', baseURL: 'http://in-process.test', maxRetries: 0, fetch });
    const stream = await c.chat.completions.create(body);
    for await (const ch of stream) {
      expect(ch.choices[0]?.delta.content).toBe('a');
      break;
    }
    expect(other).toBeDefined();
    expect(signals).toHaveLength(1);
    expect(signals[0]?.aborted).toBe(true);
  });

  it('after [DONE] the consumer gets control back even when the body cancel never settles', async () => {
    const { fetch } = inProcess(() => holdingBody([chunk('a'), '[DONE]']).rs.tee()[0]);
    const c = new LayerNet({ apiKey: 'k', baseURL: 'http://in-process.test', maxRetries: 0, fetch });
    expect(await (await c.chat.completions.create(body)).toText()).toBe('a');
  });
});
