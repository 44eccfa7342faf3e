/**
 * A streamed completion, as in openai-node: an async iterator of chunks that ends on `[DONE]`,
 * throws an in-band `{"error": ...}` event as an {@link APIError}, and aborts the HTTP request
 * when the consumer stops early (break, return, throw).
 *
 * Failures before the first token (an in-band error, a dropped connection) are retried like a
 * failed request; once a token has reached the caller the stream is never retried.
 *
 * @example
 * const stream = await client.chat.completions.create({ model: 'layernet-llama-tiny-fp32-seed0', messages, stream: true });
 * for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? '');
 * console.log(stream.route, stream.finalUsage, stream.jobId);
 */
import { parseSse } from '../../protocol/sse.js';
import {
  APIConnectionError,
  APIError,
  APIResponseValidationError,
  APIUserAbortError,
  LayerNetError,
  type APIErrorBody,
} from './errors.js';
import { PARSE_CONTEXT, type ResponseSchema } from './schemas.js';
import type { AttestationSummary, RouteSummary, Usage, VerificationReport } from './types.js';

/** One HTTP attempt of a stream, as opened by the client. */
export interface OpenedStream {
  response: Response;
  controller: AbortController;
}

export interface StreamDeps<T> {
  schema: ResponseSchema<T>;
  /** The first, already opened attempt. */
  first: OpenedStream;
  /** Opens the request again; resolves to null when no retry is left for this failure. */
  retry: (err: unknown) => Promise<OpenedStream | null>;
  /** Text of a chunk ('' for chunks that carry no token). */
  textOf: (chunk: T) => string;
  /** Runs after [DONE] when verification is on; throws AttestationError to refuse. */
  verify?: (stream: Stream<T>) => Promise<VerificationReport>;
  /** Yield nothing until `verify` passed. */
  buffer?: boolean;
  /** The caller's signal, to tell its aborts from ours. */
  signal?: AbortSignal;
}

export class Stream<T> implements AsyncIterable<T> {
  /** The current HTTP response (the last attempt's). */
  response: Response;
  /** Aborting it ends the stream. */
  controller: AbortController;
  /** Usage from the final usage chunk (needs `stream_options.include_usage`). */
  finalUsage: Usage | null = null;
  /** Route that served the answer, from the final chunk. */
  route: RouteSummary | null = null;
  /** The edge's attestation summary, from the final chunk. */
  attestation: AttestationSummary | null = null;
  /** Set when `verify` passed (after the last chunk). */
  verification: VerificationReport | null = null;
  /** The text received so far. */
  text = '';
  private iterated = false;
  private readonly deps: StreamDeps<T>;

  constructor(deps: StreamDeps<T>) {
    this.deps = deps;
    this.response = deps.first.response;
    this.controller = deps.first.controller;
  }

  /** Job id (response header `x-layernet-job-id`, else the final attestation summary). */
  get jobId(): string | null {
    return this.response.headers.get('x-layernet-job-id') ?? this.attestation?.job_id ?? null;
  }

  get requestId(): string | null {
    return this.response.headers.get('x-request-id');
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new LayerNetError('a stream can be iterated only once');
    this.iterated = true;
    return this.iterate();
  }

  /** Reads the whole stream and returns its text. */
  async toText(): Promise<string> {
    for await (const _ of this) {
      // The text accumulates in this.text.
    }
    return this.text;
  }

  private reset(opened: OpenedStream): void {
    this.response = opened.response;
    this.controller = opened.controller;
    this.finalUsage = null;
    this.route = null;
    this.attestation = null;
    this.text = '';
  }

  private async *iterate(): AsyncGenerator<T> {
    const { deps } = this;
    let finished = false;
    let held: T[] = [];
    try {
      for (;;) {
        let delivered = false;
        held = [];
        try {
          if (!this.response.body) throw new APIConnectionError('the stream has no body');
          for await (const ev of parseSse(abortableBody(this.response.body, this.controller.signal))) {
            if (ev.data === '[DONE]') {
              finished = true;
              break;
            }
            const chunk = this.parse(ev.data);
            const text = deps.textOf(chunk);
            this.text += text;
            this.observe(chunk);
            // Token-less chunks wait for the first token so that a retry never repeats them.
            held.push(chunk);
            if (!deps.buffer && (delivered || text !== '')) {
              delivered = true;
              const out = held;
              held = [];
              for (const c of out) yield c;
            }
          }
          if (!finished) throw new APIConnectionError('the stream ended before [DONE]');
          break;
        } catch (err) {
          const mapped = this.mapError(err);
          if (delivered || mapped instanceof APIUserAbortError || !(mapped instanceof APIError || mapped instanceof APIConnectionError)) throw mapped;
          this.controller.abort();
          const next = await deps.retry(mapped);
          if (!next) throw mapped;
          this.reset(next);
        }
      }
      // Verification runs once the answer is complete; its own failures never re-run the completion.
      if (deps.verify) this.verification = await deps.verify(this);
      const out = held;
      held = [];
      for (const c of out) yield c;
    } finally {
      // A consumer that stopped early (or a failure) must not leave the request running.
      if (!finished) this.controller.abort();
    }
  }

  private parse(data: string): T {
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      throw new APIResponseValidationError('a stream event is not JSON', this.requestId);
    }
    if (json !== null && typeof json === 'object' && 'error' in json) {
      const error = (json as { error: unknown }).error;
      const body: APIErrorBody = error !== null && typeof error === 'object' ? (error as APIErrorBody) : { message: String(error) };
      throw APIError.fromInBand(body, this.response.headers);
    }
    const parsed = this.deps.schema.safeParse(json, PARSE_CONTEXT);
    if (!parsed.success) throw new APIResponseValidationError(`a stream event does not match the schema: ${parsed.error.message}`, this.requestId);
    return parsed.data;
  }

  private observe(chunk: T): void {
    const c = chunk as { usage?: Usage | null; route?: RouteSummary; attestation?: AttestationSummary };
    if (c.usage) this.finalUsage = c.usage;
    if (c.route) this.route = c.route;
    if (c.attestation) this.attestation = c.attestation;
  }

  private mapError(err: unknown): unknown {
    if (err instanceof LayerNetError) return err;
    if (this.deps.signal?.aborted) return new APIUserAbortError(undefined, { cause: err });
    return new APIConnectionError(err instanceof Error ? err.message : 'the stream failed', { cause: err });
  }
}

/**
 * The response body as the SDK reads it: an abort of `signal` fails the pending read at once
 * (and cancels the body), and cancelling it never waits for the body's own cancel.
 *
 * A fetch passed in `ClientOptions.fetch` (an in-process app, a test double, a proxy) need not
 * tie its bodies to the request's signal, and a body's cancel may settle late or never (a body
 * tee'd for a clone nobody reads waits for that clone): neither may leave a consumer hanging.
 *
 * @example
 * for await (const ev of parseSse(abortableBody(res.body!, controller.signal))) console.log(ev.data);
 */
export function abortableBody(body: ReadableStream<Uint8Array>, signal: AbortSignal): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const release = () => signal.removeEventListener('abort', onAbort);
  // Cancelling the reader ends its pending read ({done: true}), which pull turns into the abort error.
  const onAbort = () => void reader.cancel(signal.reason).catch(() => undefined);
  const abortError = () => (signal.reason instanceof Error ? signal.reason : new APIConnectionError('the request was aborted', { cause: signal.reason }));
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (err) {
          release();
          throw signal.aborted ? abortError() : err;
        }
        if (signal.aborted) {
          release();
          throw abortError();
        }
        if (result.done) {
          release();
          controller.close();
        } else controller.enqueue(result.value);
      },
      cancel(reason) {
        release();
        void reader.cancel(reason).catch(() => undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

/** Reads a stream to its end and returns the text. */
export function collectText<T>(stream: Stream<T>): Promise<string> {
  return stream.toText();
}
