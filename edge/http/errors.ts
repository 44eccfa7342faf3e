/**
 * One error envelope everywhere (protocol/errors.ts): an ApiError becomes its status and the
 * OpenAI body; anything else is a 500 whose details stay in the log.
 *
 * @example
 * app.onError((err, c) => errorResponse(err, c.get('requestId'), log));
 */
import { ApiError } from '../../protocol/errors.js';

export function errorResponse(err: unknown, requestId: string, log?: (e: Record<string, unknown>) => void): Response {
  const api = err instanceof ApiError ? err : new ApiError('internal_error', 'internal error');
  if (!(err instanceof ApiError) && log) {
    log({ level: 'error', msg: 'unhandled error', requestId, error: describeErrorChain(err) });
  }
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId };
  if (api.retryAfter !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(api.retryAfter)));
  return new Response(JSON.stringify(api.toEnvelope()), { status: api.status, headers });
}

/**
 * `name: message (code)` of an error and each of its causes, outermost first: a driver's wrapper
 * (drizzle's "Failed query: ...") hides the reason in its `cause`. drizzle's message repeats the
 * query and its parameters; only the query's first words are kept.
 */
export function describeErrorChain(err: unknown): string {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && chain.length < 8 && !chain.includes(e); e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain
    .map((e) => {
      if (!(e instanceof Error)) return String(e);
      const code = (e as { code?: unknown }).code;
      const message = e.message.startsWith('Failed query:') ? `${e.message.split('\n')[0]!.slice(0, 80)}...` : e.message;
      return `${e.name}: ${message}${typeof code === 'string' && !message.includes(code) ? ` (${code})` : ''}`;
    })
    .join(' <- ');
}

/** The in-band form of an error once a stream has started. */
export function errorEvent(err: unknown): { error: { message: string; type: string; code: string | null; param: string | null } } {
  const api = err instanceof ApiError ? err : new ApiError('internal_error', 'internal error');
  return api.toEnvelope();
}
