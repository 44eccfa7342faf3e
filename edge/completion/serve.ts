/**
 * Shared serving path of /v1/chat/completions and /v1/completions: model lookup, limits,
 * budget and rate limits, routing, then either a collected JSON answer (answer.ts) or an SSE
 * stream (sse.ts), both over the same `ServingJob` (serving-job.ts).
 *
 * @example
 * const { model, tokenizer } = await modelWithTokenizer(deps, body.model);
 * return serveCompletion(c, deps, { kind: 'chat', body, model, tokenizer, promptIds: tokenizer.encodeChat(messages) });
 */
import type { Context } from 'hono';
import { ApiError } from '../../protocol/errors.js';
import { MAX_PROMPT_TOKENS } from '../../protocol/agent-api.js';
import { routePreferencesSchema, type ChatCompletionRequest, type CompletionRequest } from '../../protocol/api.js';
import { randomBytes } from '../../protocol/bytes.js';
import type { AppEnv, EdgeDeps, EdgeTokenizer } from '../deps.js';
import type { ModelRecord } from '../../db/registry-contract.js';
import { checkBudget, reserveUsage, settleUsage } from '../auth/limits.js';
import { Generation } from '../dispatch/generate.js';
import { StopScanner } from '../text/stop.js';
import type { ServingJob } from './serving-job.js';
import { collectAnswer } from './answer.js';
import { streamAnswer } from './sse.js';
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

  const job: ServingJob = { deps, input, gen, requestId, abort, created, settle, usage, echo, consume, tail };
  return body.stream ? streamAnswer(job) : collectAnswer(job);
}
