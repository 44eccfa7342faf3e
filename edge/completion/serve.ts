/**
 * Shared serving path of /v1/chat/completions and /v1/completions: model lookup, limits,
 * budget and rate limits, routing, then either a collected JSON answer or an SSE stream.
 *
 * Streams: the edge waits up to `keepAliveMs` for the first token so that early failures (no
 * route, every route failing) are still real HTTP statuses; after that it commits a 200 and
 * sends SSE keep-alive comments until tokens flow. After the first byte, an error is an in-band
 * `data: {"error": ...}` event.
 *
 * @example
 * const { model, tokenizer } = await modelWithTokenizer(deps, body.model);
 * return serveCompletion(c, deps, { kind: 'chat', body, model, tokenizer, promptIds: tokenizer.encodeChat(messages) });
 */
import type { Context } from 'hono';
import { ApiError } from '../../protocol/errors.js';
import { MAX_PROMPT_TOKENS } from '../../protocol/agent-api.js';
import { routePreferencesSchema, type ChatCompletionRequest, type CompletionRequest } from '../../protocol/api.js';
import { SSE_DONE, sseComment, sseData } from '../../protocol/sse.js';
import { randomBytes } from '../../protocol/bytes.js';
import type { AppEnv, EdgeDeps, EdgeTokenizer } from '../deps.js';
import type { ModelRecord } from '../../db/registry-contract.js';
import { checkBudget, reserveUsage, settleUsage } from '../auth/limits.js';
import { Generation, type GenerationEvent } from '../dispatch/generate.js';
import { StopScanner } from '../text/stop.js';
import { errorEvent } from '../http/errors.js';
import { clientLocation } from '../http/location.js';

/** A request with its model and that model's tokenizer (edge/models.ts `modelWithTokenizer`). */
interface Resolved {
  model: ModelRecord;
  tokenizer: EdgeTokenizer;
  promptIds: number[];
}

export type CompletionInput =
  | (Resolved & { kind: 'chat'; body: ChatCompletionRequest })
  | (Resolved & { kind: 'text'; body: CompletionRequest; promptText: string });

/**
 * The job's headers. A collected answer's are final; a stream's are sent before its tokens, so
 * they describe the job as it stood then: its attestation header says `provisional` (it counts
 * the chunks verified so far), and the last event's `route` and `attestation` are authoritative.
 */
function jobHeaders(gen: Generation, requestId: string, stream: boolean): Record<string, string> {
  const att = gen.attestationSummary();
  const regionMet = gen.regionMet();
  const attestation = att.chain_head ? `verified; chunks=${att.chunks}; chain-head=${att.chain_head}; url=${att.url}` : `pending; url=${att.url}`;
  return {
    'x-request-id': requestId,
    'x-layernet-job-id': gen.req.jobId,
    'x-layernet-route': gen.routeHeader(),
    'x-layernet-attestation': stream ? `${attestation}; provisional` : attestation,
    ...(regionMet !== null ? { 'x-layernet-region-met': String(regionMet) } : {}),
  };
}

export async function serveCompletion(c: Context<AppEnv>, deps: EdgeDeps, input: CompletionInput): Promise<Response> {
  const { body, promptIds, model, tokenizer } = input;
  const auth = c.get('auth');
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? deps.config.defaultMaxTokens;
  const context = model.manifest.architecture.maxPositionEmbeddings;
  if (promptIds.length > MAX_PROMPT_TOKENS || promptIds.length + maxTokens > context) {
    throw new ApiError(
      'context_length_exceeded',
      `prompt (${promptIds.length} tokens) plus max_tokens (${maxTokens}) exceeds the model's context of ${context} tokens`,
      'max_tokens',
    );
  }
  checkBudget(auth);
  const reservation = await reserveUsage(auth, promptIds.length + maxTokens, deps);
  const prefs = routePreferencesSchema.parse(body.route ?? {});
  const seed = body.seed ?? new DataView(randomBytes(4).buffer).getUint32(0);
  const abort = new AbortController();
  c.req.raw.signal?.addEventListener('abort', () => abort.abort(), { once: true });
  const gen = new Generation(deps, {
    jobId: crypto.randomUUID(),
    auth,
    model,
    promptIds,
    stopTokenIds: tokenizer.eosIds,
    maxTokens,
    sampling: { temperature: body.temperature ?? 1, topP: body.top_p ?? 1, topK: body.top_k ?? 0, seed },
    prefs,
    client: clientLocation(c.req.raw),
    stream: body.stream ?? false,
    signal: abort.signal,
  });
  try {
    await gen.prepare();
  } catch (err) {
    deps.waitUntil(settleUsage(auth, reservation, 0, deps));
    throw err;
  }
  const stops = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const created = Math.floor(deps.clock.now() / 1000);
  const requestId = c.get('requestId');
  // A job that failed is charged nothing (generate.ts) and counts nothing against the token limit:
  // the network failed the client, not the other way round.
  const settle = () => deps.waitUntil(settleUsage(auth, reservation, gen.outcome === 'error' ? 0 : promptIds.length + gen.tokens.length, deps));
  const usage = () => ({ prompt_tokens: promptIds.length, completion_tokens: gen.tokens.length, total_tokens: promptIds.length + gen.tokens.length });
  const echo = input.kind === 'text' && (input.body.echo ?? false) ? input.promptText : '';
  const decoder = tokenizer.streamingDecoder();
  const scanner = new StopScanner(stops);

  /** Turns verified tokens into text; true when a stop string ended the answer. */
  const consume = (ids: number[]): { text: string; stopped: boolean } => {
    let text = '';
    for (const id of ids) {
      const r = scanner.push(decoder.push(id));
      text += r.text;
      if (r.stopped) return { text, stopped: true };
    }
    return { text, stopped: false };
  };
  const tail = () => scanner.push(decoder.flush()).text + scanner.flush();

  if (!body.stream) {
    let text = echo;
    let finish: 'stop' | 'length' = 'length';
    try {
      for await (const ev of gen.run()) {
        if (ev.type === 'done') {
          finish = ev.reason;
          text += tail();
          break;
        }
        const r = consume(ev.ids);
        text += r.text;
        if (r.stopped) {
          finish = 'stop';
          gen.finishEarly('stop');
          break;
        }
      }
    } finally {
      settle();
    }
    await gen.persisted();
    const extras = { usage: usage(), route: gen.routeSummary(), attestation: gen.attestationSummary() };
    const payload =
      input.kind === 'chat'
        ? {
            id: `chatcmpl-${gen.req.jobId}`,
            object: 'chat.completion',
            created,
            model: model.name,
            system_fingerprint: null,
            choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, finish_reason: finish, logprobs: null }],
            ...extras,
          }
        : {
            id: `cmpl-${gen.req.jobId}`,
            object: 'text_completion',
            created,
            model: model.name,
            system_fingerprint: null,
            choices: [{ index: 0, text, finish_reason: finish, logprobs: null }],
            ...extras,
          };
    return new Response(JSON.stringify(payload), { status: 200, headers: { 'content-type': 'application/json', ...jobHeaders(gen, requestId, false) } });
  }

  const includeUsage = body.stream_options?.include_usage === true;
  const id = input.kind === 'chat' ? `chatcmpl-${gen.req.jobId}` : `cmpl-${gen.req.jobId}`;
  const chunk = (content: string | null, finish: 'stop' | 'length' | null, extra: Record<string, unknown> = {}) =>
    input.kind === 'chat'
      ? {
          id,
          object: 'chat.completion.chunk',
          created,
          model: model.name,
          system_fingerprint: null,
          choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish, logprobs: null }],
          ...(includeUsage ? { usage: null } : {}),
          ...extra,
        }
      : {
          id,
          object: 'text_completion',
          created,
          model: model.name,
          system_fingerprint: null,
          choices: [{ index: 0, text: content ?? '', finish_reason: finish, logprobs: null }],
          ...extra,
        };

  const iterator = gen.run()[Symbol.asyncIterator]();
  type Step = { ok: true; value: IteratorResult<GenerationEvent> } | { ok: false; error: unknown };
  const next = (): Promise<Step> => iterator.next().then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
  let pending = next();
  // Early failures stay real HTTP statuses.
  const early = await Promise.race([pending, new Promise<null>((r) => setTimeout(() => r(null), deps.config.keepAliveMs))]);
  if (early && !early.ok) {
    settle();
    throw early.error;
  }
  const headers = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...jobHeaders(gen, requestId, true) };
  let closed = false;
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (bytes: Uint8Array) => {
        if (!closed) controller.enqueue(bytes);
      };
      try {
        if (echo) send(sseData(chunk(echo, null)));
        if (input.kind === 'chat') {
          const first = chunk(null, null);
          (first.choices[0] as { delta: Record<string, unknown> }).delta = { role: 'assistant', content: '' };
          send(sseData(first));
        }
        let finish: 'stop' | 'length' | null = null;
        while (!closed) {
          let step: Step | null = null;
          while (step === null && !closed) {
            step = await Promise.race([pending, new Promise<null>((r) => setTimeout(() => r(null), deps.config.keepAliveMs))]);
            if (step === null) send(sseComment('keep-alive'));
          }
          if (!step || closed) break;
          if (!step.ok) throw step.error;
          if (step.value.done) break;
          const ev = step.value.value;
          if (ev.type === 'done') {
            finish = ev.reason;
            const rest = tail();
            if (rest) send(sseData(chunk(rest, null)));
            break;
          }
          const r = consume(ev.ids);
          if (r.text) send(sseData(chunk(r.text, null)));
          if (r.stopped) {
            finish = 'stop';
            gen.finishEarly('stop');
            await iterator.return(undefined);
            break;
          }
          pending = next();
        }
        // Lets the generation finish its bookkeeping (a no-op when it already has).
        await iterator.return(undefined);
        await gen.persisted();
        if (closed) return;
        send(sseData(chunk(null, finish ?? 'length', { route: gen.routeSummary(), attestation: gen.attestationSummary() })));
        if (includeUsage) {
          const usageChunk = chunk(null, null, { usage: usage() });
          usageChunk.choices = [];
          send(sseData(usageChunk));
        }
        send(SSE_DONE);
      } catch (err) {
        deps.log({ level: 'warn', msg: 'stream failed after the first byte', requestId, jobId: gen.req.jobId, error: err instanceof Error ? err.message : String(err) });
        send(sseData(errorEvent(err)));
      } finally {
        settle();
        if (!closed) {
          closed = true;
          controller.close();
        }
      }
    },
    async cancel() {
      // The client went away: abort the upstream stream; Generation sends the signed cancel.
      closed = true;
      abort.abort();
      await iterator.return(undefined).catch(() => undefined);
    },
  });
  return new Response(stream, { status: 200, headers });
}
