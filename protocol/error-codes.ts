/**
 * The error codes of the OpenAI-style envelope and the HTTP status and `type` each maps to: one
 * table for the edge, the agents and the SDK. No zod here, so the SDK's browser bundle carries
 * the table without a schema library (protocol/errors.ts re-exports it with the envelope schema).
 *
 * @example
 * if (isErrorCode(body.code)) console.log(ERROR_CODES[body.code].status); // 'no_route' -> 503
 */
export const ERROR_CODES = {
  invalid_request: { status: 400, type: 'invalid_request_error' },
  invalid_json: { status: 400, type: 'invalid_request_error' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error' },
  invalid_api_key: { status: 401, type: 'authentication_error' },
  missing_api_key: { status: 401, type: 'authentication_error' },
  invalid_signature: { status: 401, type: 'authentication_error' },
  insufficient_scope: { status: 403, type: 'permission_error' },
  budget_exceeded: { status: 403, type: 'permission_error' },
  not_found: { status: 404, type: 'not_found_error' },
  model_not_found: { status: 404, type: 'not_found_error' },
  request_timeout: { status: 408, type: 'timeout_error' },
  conflict: { status: 409, type: 'conflict_error' },
  payload_too_large: { status: 413, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error' },
  capacity_exceeded: { status: 429, type: 'rate_limit_error' },
  internal_error: { status: 500, type: 'server_error' },
  misconfigured: { status: 500, type: 'server_error' },
  upstream_error: { status: 502, type: 'upstream_error' },
  attestation_failed: { status: 502, type: 'upstream_error' },
  no_route: { status: 503, type: 'service_unavailable' },
  /** The edge cannot reach its registry (an outage): retry after `retry-after`. */
  registry_unavailable: { status: 503, type: 'service_unavailable' },
  upstream_timeout: { status: 504, type: 'timeout_error' },
} as const satisfies Record<string, { status: number; type: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}
