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
    log({ level: 'error', msg: 'unhandled error', requestId, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
  }
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId };
  if (api.retryAfter !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(api.retryAfter)));
  return new Response(JSON.stringify(api.toEnvelope()), { status: api.status, headers });
}

/** The in-band form of an error once a stream has started. */
export function errorEvent(err: unknown): { error: { message: string; type: string; code: string | null; param: string | null } } {
  const api = err instanceof ApiError ? err : new ApiError('internal_error', 'internal error');
  return api.toEnvelope();
}
