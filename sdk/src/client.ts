/**
 * The LayerNet client. Mirrors openai-node: a core (this file: requests, retries, streams,
 * verification) and one file per resource in resources/ (`chat.completions`, `completions`,
 * `models`, `pools`, `jobs`), typed bodies, one error class per status, retries with capped
 * exponential backoff and jitter that honour `retry-after`, streams as async iterators; plus the
 * network's own features: route preferences and client-side re-verification of attestations.
 *
 * Runs unchanged in Node 20+, Cloudflare Workers and browsers: it uses only fetch, WebCrypto,
 * TextEncoder/TextDecoder and ReadableStream.
 *
 * @example
 * const client = new LayerNet({ apiKey: 'ln_...', baseURL: 'http://127.0.0.1:8787', verify: true });
 * const completion = await client.chat.completions.create({ model: 'layernet-llama-tiny-fp32-seed0', messages: [{ role: 'user', content: 'hi' }] });
 * console.log(completion.choices[0]?.message.content, completion.route, completion.verification);
 */
import { PARSE_CONTEXT, type ResponseSchema } from './schemas.js';
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIResponseValidationError,
  APIUserAbortError,
  LayerNetError,
  type APIErrorBody,
} from './errors.js';
import { abortableSleep, isRetryableStatus, retryDelayMs } from './retry.js';
import { Stream, type OpenedStream } from './stream.js';
import { JobVerifier, type VerifyInput } from './verify.js';
import { ChatCompletions } from './resources/chat.js';
import { Completions } from './resources/completions.js';
import { Models } from './resources/models.js';
import { Pools } from './resources/pools.js';
import { Jobs } from './resources/jobs.js';
import type { RequestOptions, RoutePreferencesParam, VerificationReport, VerifyOptions } from './types.js';

export const SDK_VERSION = '0.1.0';
export const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;
export const DEFAULT_MAX_RETRIES = 2;
/** Largest JSON body read (an attestation record of a long answer is the biggest). */
export const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/** The fetch the client calls (globalThis.fetch fits; so does a Hono app's `fetch` wrapped in an async function). */
export type Fetch = (url: string, init: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** API key (`Authorization: Bearer`). Default: env LAYERNET_API_KEY. `null`: no key (public routes only). */
  apiKey?: string | null;
  /** The edge's origin, e.g. `https://edge.example.com` (a trailing `/v1`, as for OpenAI clients, is accepted). Default: env LAYERNET_BASE_URL. */
  baseURL?: string;
  /** Milliseconds until response headers (and, without streaming, the whole body) arrive. Default 10 minutes. */
  timeout?: number;
  /** Retries of a failed request (408/409/429/5xx, connection errors, timeouts). Default 2. */
  maxRetries?: number;
  /** A fetch implementation (default: globalThis.fetch). */
  fetch?: Fetch;
  /** Default route preferences for completions whose body has no `route`. */
  route?: RoutePreferencesParam;
  /** Re-verify every completion's attestation chain (see {@link VerifyOptions}). */
  verify?: boolean | VerifyOptions;
  /** Default for {@link RequestOptions.verifyStream}. */
  verifyStream?: 'end' | 'buffer';
  defaultHeaders?: Record<string, string>;
  /** Injected for tests: how to wait between retries. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Injected for tests: jitter source in [0, 1). */
  random?: () => number;
  /** Injected for tests: the clock (epoch ms), for `retry-after` dates. */
  now?: () => number;
  maxResponseBytes?: number;
}

/** A completion, with `verification` set when `verify` was on. */
export type Verified<T> = T & { verification?: VerificationReport };

/** @internal What a resource asks the core to send. */
export interface RequestSpec {
  method: 'GET' | 'POST';
  path: string;
  query?: Record<string, string | undefined> | undefined;
  body?: unknown;
}

interface RetryState {
  retries: number;
}

function readEnv(name: string): string | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const value = env?.[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function normalizeBaseURL(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new LayerNetError(`baseURL is not a URL: ${raw}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new LayerNetError('baseURL must be http(s)');
  return url.toString().replace(/\/+$/, '').replace(/\/v1$/, '');
}

async function readBounded(res: Response, maxBytes: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) throw new APIResponseValidationError(`response body larger than ${maxBytes} bytes`, res.headers.get('x-request-id'));
      parts.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => undefined);
    throw err;
  } finally {
    reader.releaseLock();
  }
  const all = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    all.set(p, offset);
    offset += p.byteLength;
  }
  return new TextDecoder().decode(all);
}

export class LayerNet {
  readonly apiKey: string | null;
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly chat: { completions: ChatCompletions };
  readonly completions: Completions;
  readonly models: Models;
  readonly pools: Pools;
  readonly jobs: Jobs;
  /** @internal */
  readonly options: ClientOptions;
  private readonly fetchImpl: Fetch;
  private readonly verifier: JobVerifier;

  constructor(options: ClientOptions = {}) {
    const apiKey = options.apiKey === undefined ? readEnv('LAYERNET_API_KEY') : options.apiKey;
    if (apiKey === undefined) {
      throw new LayerNetError('no API key: pass apiKey, set LAYERNET_API_KEY, or pass apiKey: null for public routes only');
    }
    const baseURL = options.baseURL ?? readEnv('LAYERNET_BASE_URL');
    if (!baseURL) throw new LayerNetError('no edge URL: pass baseURL or set LAYERNET_BASE_URL');
    this.apiKey = apiKey;
    this.baseURL = normalizeBaseURL(baseURL);
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.options = options;
    if (typeof (options.fetch ?? globalThis.fetch) !== 'function') throw new LayerNetError('no fetch in this runtime: pass options.fetch');
    // Unbound global fetch throws "Illegal invocation" in browsers and Workers.
    this.fetchImpl = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
    this.verifier = new JobVerifier({
      get: (path, query) => this.get(path, query),
      sleep: (ms) => this.sleep(ms),
      now: () => this.now(),
    });
    this.chat = { completions: new ChatCompletions(this) };
    this.completions = new Completions(this);
    this.models = new Models(this);
    this.pools = new Pools(this);
    this.jobs = new Jobs(this);
  }

  /** GET a JSON document (any edge route). */
  async get(path: string, query?: Record<string, string | undefined>, options: RequestOptions = {}): Promise<unknown> {
    return this.requestJson({ method: 'GET', path, query }, options);
  }

  /** POST a JSON body and read a JSON answer (any edge route). */
  async post(path: string, body: unknown, options: RequestOptions = {}): Promise<unknown> {
    return this.requestJson({ method: 'POST', path, body }, options);
  }

  /** @internal */
  now(): number {
    return this.options.now ? this.options.now() : Date.now();
  }

  /** @internal */
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    try {
      await (this.options.sleep ?? abortableSleep)(ms, signal);
    } catch (err) {
      if (signal?.aborted) throw new APIUserAbortError(undefined, { cause: err });
      throw err;
    }
  }

  /** @internal The wait before the next retry of `err`, or null when it must not be retried. */
  retryDelay(err: unknown, state: RetryState, maxRetries: number): number | null {
    if (state.retries >= maxRetries) return null;
    const random = this.options.random ?? Math.random;
    if (err instanceof APIError) {
      if (!isRetryableStatus(err.status, err.headers)) return null;
      return retryDelayMs({ retriesSoFar: state.retries, headers: err.headers, now: this.now(), random });
    }
    if (err instanceof APIConnectionError) return retryDelayMs({ retriesSoFar: state.retries, now: this.now(), random });
    return null;
  }

  /** @internal Runs `once` until it succeeds, fails for good, or retries run out. */
  async withRetries<R>(options: RequestOptions, state: RetryState, once: () => Promise<R>): Promise<R> {
    const maxRetries = options.maxRetries ?? this.maxRetries;
    for (;;) {
      try {
        return await once();
      } catch (err) {
        const delay = this.retryDelay(err, state, maxRetries);
        if (delay === null) throw err;
        state.retries++;
        await this.sleep(delay, options.signal);
      }
    }
  }

  private url(spec: RequestSpec): string {
    const url = new URL(this.baseURL + spec.path);
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    return url.toString();
  }

  private headers(spec: RequestSpec, options: RequestOptions, stream: boolean): Headers {
    const h = new Headers(this.options.defaultHeaders);
    h.set('accept', stream ? 'text/event-stream' : 'application/json');
    if (spec.body !== undefined) h.set('content-type', 'application/json');
    if (this.apiKey) h.set('authorization', `Bearer ${this.apiKey}`);
    for (const [k, v] of Object.entries(options.headers ?? {})) h.set(k, v);
    return h;
  }

  /**
   * One HTTP attempt. Resolves with a 2xx response whose body is unread; the timeout keeps
   * running until `done()` is called (after the body was read, or once a stream has its headers).
   */
  private async fetchOnce(spec: RequestSpec, options: RequestOptions, stream: boolean): Promise<OpenedStream & { done: () => void }> {
    const signal = options.signal;
    if (signal?.aborted) throw new APIUserAbortError();
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    const timeout = options.timeout ?? this.timeout;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeout);
    const done = () => clearTimeout(timer);
    const fail = (err: unknown): unknown => {
      done();
      signal?.removeEventListener('abort', onAbort);
      return mapFailure(err);
    };
    const mapFailure = (err: unknown): unknown => {
      if (err instanceof LayerNetError) return err;
      if (signal?.aborted) return new APIUserAbortError(undefined, { cause: err });
      if (timedOut) return new APIConnectionTimeoutError(`${spec.method} ${this.url(spec)}: no answer within ${timeout} ms`, { cause: err });
      return new APIConnectionError(`${spec.method} ${this.url(spec)}: ${describeFailure(err)}`, { cause: err });
    };
    let response: Response;
    try {
      response = await this.fetchImpl(this.url(spec), {
        method: spec.method,
        headers: this.headers(spec, options, stream),
        ...(spec.body !== undefined ? { body: JSON.stringify(spec.body) } : {}),
        signal: controller.signal,
      });
    } catch (err) {
      throw fail(err);
    }
    if (!response.ok) {
      let text = '';
      try {
        text = await readBounded(response, MAX_ERROR_BODY_BYTES);
      } catch (err) {
        if (timedOut || signal?.aborted) throw fail(err);
      }
      done();
      signal?.removeEventListener('abort', onAbort);
      let body: APIErrorBody | undefined;
      try {
        const json = JSON.parse(text) as { error?: unknown };
        if (json && typeof json.error === 'object' && json.error !== null) body = json.error as APIErrorBody;
      } catch {
        body = undefined;
      }
      throw APIError.generate(response.status, body, text.slice(0, 500) || undefined, response.headers);
    }
    return {
      response,
      controller,
      // A stream keeps the caller's abort listener: the caller may abort it mid-way.
      done: () => {
        done();
        if (!stream) signal?.removeEventListener('abort', onAbort);
      },
    };
  }

  /** @internal A JSON request with retries; the answer is parsed with `schema` when given. */
  async requestJson<T = unknown>(spec: RequestSpec, options: RequestOptions, schema?: ResponseSchema<T>): Promise<T> {
    const state: RetryState = { retries: 0 };
    const maxBytes = this.options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    return this.withRetries(options, state, async () => {
      const opened = await this.fetchOnce(spec, options, false);
      let text: string;
      try {
        text = await readBounded(opened.response, maxBytes);
      } catch (err) {
        opened.done();
        if (err instanceof LayerNetError) throw err;
        if (options.signal?.aborted) throw new APIUserAbortError(undefined, { cause: err });
        if (opened.controller.signal.aborted) throw new APIConnectionTimeoutError('the body did not arrive in time', { cause: err });
        throw new APIConnectionError(`${spec.method} ${this.url(spec)}: ${describeFailure(err)}`, { cause: err });
      }
      opened.done();
      const requestId = opened.response.headers.get('x-request-id');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new APIResponseValidationError(`${spec.method} ${spec.path}: the answer is not JSON`, requestId);
      }
      if (!schema) return json as T;
      const parsed = schema.safeParse(json, PARSE_CONTEXT);
      if (!parsed.success) throw new APIResponseValidationError(`${spec.method} ${spec.path}: the answer does not match the schema: ${parsed.error.message}`, requestId);
      return parsed.data;
    });
  }

  /** @internal A streamed request; failures before the first token are retried (see Stream). */
  async requestStream<T>(spec: RequestSpec, options: RequestOptions, schema: ResponseSchema<T>, textOf: (chunk: T) => string, verifyInput?: (s: Stream<T>) => VerifyInput): Promise<Stream<T>> {
    const state: RetryState = { retries: 0 };
    const maxRetries = options.maxRetries ?? this.maxRetries;
    const open = async () => {
      const opened = await this.fetchOnce(spec, options, true);
      opened.done();
      return { response: opened.response, controller: opened.controller };
    };
    const first = await this.withRetries(options, state, open);
    const verify = this.verifyOptions(options);
    return new Stream<T>({
      schema,
      first,
      textOf,
      ...(options.signal ? { signal: options.signal } : {}),
      buffer: verify !== null && (options.verifyStream ?? this.options.verifyStream) === 'buffer',
      retry: async (err) => {
        const delay = this.retryDelay(err, state, maxRetries);
        if (delay === null) return null;
        state.retries++;
        await this.sleep(delay, options.signal);
        return this.withRetries(options, state, open);
      },
      ...(verify !== null && verifyInput
        ? {
            verify: (s: Stream<T>) => {
              const input = verifyInput(s);
              return this.verifier.verify(input, verify);
            },
          }
        : {}),
    });
  }

  /** @internal Null when verification is off for this request. */
  verifyOptions(options: RequestOptions): VerifyOptions | null {
    const v = options.verify ?? this.options.verify ?? false;
    if (v === false) return null;
    return v === true ? {} : v;
  }

  /** @internal */
  verifyJob(input: VerifyInput, options: VerifyOptions): Promise<VerificationReport> {
    return this.verifier.verify(input, options);
  }

  /** @internal The body with the route preferences filled in from the request or client defaults. */
  withRoute<B extends { route?: RoutePreferencesParam | undefined }>(body: B, options: RequestOptions): B {
    const route = body.route ?? options.route ?? this.options.route;
    return route === undefined ? body : { ...body, route };
  }
}

/**
 * fetch's own message is only "fetch failed" (undici) or "Failed to fetch" (browsers): add the
 * cause's code or message when there is one (ECONNREFUSED, ENOTFOUND, a TLS error).
 */
function describeFailure(err: unknown): string {
  if (!(err instanceof Error)) return 'connection error';
  const cause = (err as { cause?: unknown }).cause as { code?: unknown; message?: unknown } | undefined;
  const why = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : undefined;
  return why && !err.message.includes(why) ? `${err.message} (${why})` : err.message;
}
