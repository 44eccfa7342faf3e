/**
 * The agent's error vocabulary: one class, one code-to-status table. Before the first streamed
 * byte an error is a real HTTP status with the OpenAI envelope; after it, an NDJSON `error` event
 * (jobs) or an `error` frame (spans).
 *
 * @example
 * throw new AgentError('capacity', 'all 16 sessions are busy', { retryAfter: 2 });
 */
import type { ForwardEvidence } from '../../protocol/forward-evidence.js';

export const AGENT_ERRORS = {
  invalid_request: { status: 400, type: 'invalid_request_error' },
  invalid_json: { status: 400, type: 'invalid_request_error' },
  bad_frame: { status: 400, type: 'invalid_request_error' },
  input_mismatch: { status: 400, type: 'invalid_request_error' },
  /** A forward frame's activations or prevHash differ from what the previous hop attested. */
  bad_input: { status: 400, type: 'invalid_request_error' },
  invalid_ticket: { status: 401, type: 'authentication_error' },
  invalid_signature: { status: 401, type: 'authentication_error' },
  expired: { status: 401, type: 'authentication_error' },
  wrong_hop: { status: 403, type: 'permission_error' },
  wrong_model: { status: 403, type: 'permission_error' },
  not_found: { status: 404, type: 'not_found_error' },
  unknown_session: { status: 404, type: 'not_found_error' },
  replayed: { status: 409, type: 'conflict_error' },
  conflict: { status: 409, type: 'conflict_error' },
  busy: { status: 409, type: 'conflict_error' },
  payload_too_large: { status: 413, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error' },
  internal_error: { status: 500, type: 'server_error' },
  upstream_error: { status: 502, type: 'upstream_error' },
  capacity: { status: 503, type: 'service_unavailable' },
  shutdown: { status: 503, type: 'service_unavailable' },
  deadline: { status: 504, type: 'timeout_error' },
  upstream_timeout: { status: 504, type: 'timeout_error' },
} as const satisfies Record<string, { status: number; type: string }>;

export type AgentErrorCode = keyof typeof AGENT_ERRORS;

export class AgentError extends Error {
  override readonly name = 'AgentError';
  readonly status: number;
  readonly retryAfter: number | undefined;
  /** Agent that failed, when the error comes from a later hop. */
  readonly agentId: string | undefined;
  /** A refused forward's proof against the sending hop, relayed as is up to the edge. */
  readonly evidence: ForwardEvidence | undefined;
  constructor(
    readonly code: AgentErrorCode,
    message: string,
    opts: { retryAfter?: number; agentId?: string; evidence?: ForwardEvidence } = {},
  ) {
    super(message);
    this.status = AGENT_ERRORS[code].status;
    this.retryAfter = opts.retryAfter;
    this.agentId = opts.agentId;
    this.evidence = opts.evidence;
  }

  toEnvelope() {
    return { error: { message: this.message, type: AGENT_ERRORS[this.code].type, code: this.code, param: null } };
  }
}

export function isAgentErrorCode(code: string): code is AgentErrorCode {
  return Object.hasOwn(AGENT_ERRORS, code);
}

/** Throws an AgentError with `retryAfter` when given: the one line every refusal of a check ends with. */
export function fail(code: AgentErrorCode, message: string, retryAfter?: number): never {
  throw new AgentError(code, message, retryAfter === undefined ? {} : { retryAfter });
}

/** Any thrown value as an AgentError (unknown errors become internal_error without leaking internals). */
export function toAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  if (err instanceof Error && err.name === 'SpanInputError') return new AgentError('invalid_request', err.message);
  return new AgentError('internal_error', 'internal error');
}
