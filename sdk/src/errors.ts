/**
 * Error classes, one per HTTP status as in openai-node, plus connection, timeout, abort and
 * attestation errors that carry no status.
 *
 * @example
 * try {
 *   await client.chat.completions.create({ model: 'layernet-llama-tiny-fp32-seed0', messages });
 * } catch (err) {
 *   if (err instanceof RateLimitError) console.log('retry in', err.retryAfter, 's; request', err.requestId);
 *   else if (err instanceof AttestationError) console.log('refused:', err.reason, err.detail);
 *   else if (err instanceof JobFoundBadError) console.log('found bad by a re-execution check:', err.check);
 *   else throw err;
 * }
 */
import { ERROR_CODES, isErrorCode } from '../../protocol/error-codes.js';
import type { ChainFailure } from '../../protocol/attestation-chain.js';
import type { JobCheck } from '../../protocol/api.js';

/** Base class of every error the SDK throws. */
export class LayerNetError extends Error {
  override name = 'LayerNetError';
}

/** The body of an error response: the OpenAI envelope's `error` object (or whatever came back). */
export interface APIErrorBody {
  message?: string;
  type?: string;
  code?: string | null;
  param?: string | null;
  [key: string]: unknown;
}

/** The edge answered with an error status (or sent an in-band error event in a stream). */
export class APIError extends LayerNetError {
  override name = 'APIError';
  /** HTTP status (for an in-band stream error: the status the error code maps to). */
  readonly status: number;
  readonly code: string | null;
  readonly type: string | null;
  readonly param: string | null;
  /** The `x-request-id` response header: quote it when reporting a problem. */
  readonly requestId: string | null;
  readonly headers: Headers;
  readonly error: APIErrorBody | undefined;
  /** True when the error arrived as an in-band SSE event after the stream had started. */
  readonly inBand: boolean;

  constructor(status: number, error: APIErrorBody | undefined, message: string | undefined, headers: Headers | undefined, inBand = false) {
    super(APIError.describe(status, error, message));
    this.status = status;
    this.error = error;
    this.code = typeof error?.code === 'string' ? error.code : null;
    this.type = typeof error?.type === 'string' ? error.type : null;
    this.param = typeof error?.param === 'string' ? error.param : null;
    this.headers = headers ?? new Headers();
    this.requestId = this.headers.get('x-request-id');
    this.inBand = inBand;
  }

  private static describe(status: number, error: APIErrorBody | undefined, message: string | undefined): string {
    const msg = typeof error?.message === 'string' ? error.message : message;
    return msg ? `${status} ${msg}` : `${status} status code (no body)`;
  }

  /** The subclass for a status (an in-band error maps its code to a status first). */
  static generate(status: number, error: APIErrorBody | undefined, message: string | undefined, headers: Headers | undefined, inBand = false): APIError {
    const Cls = errorClassForStatus(status);
    return new Cls(status, error, message, headers, inBand);
  }

  /** An in-band `{"error": {...}}` stream event: the status comes from the shared code table. */
  static fromInBand(error: APIErrorBody, headers: Headers | undefined): APIError {
    const status = typeof error.code === 'string' && isErrorCode(error.code) ? ERROR_CODES[error.code].status : 500;
    return APIError.generate(status, error, undefined, headers, true);
  }
}

export class BadRequestError extends APIError {
  override name = 'BadRequestError';
}
export class AuthenticationError extends APIError {
  override name = 'AuthenticationError';
}
export class PermissionDeniedError extends APIError {
  override name = 'PermissionDeniedError';
}
export class NotFoundError extends APIError {
  override name = 'NotFoundError';
}
/** The edge answered 408 (a client-side timeout is an {@link APIConnectionTimeoutError}). */
export class RequestTimeoutError extends APIError {
  override name = 'RequestTimeoutError';
}
export class ConflictError extends APIError {
  override name = 'ConflictError';
}
export class PayloadTooLargeError extends APIError {
  override name = 'PayloadTooLargeError';
}
export class UnprocessableEntityError extends APIError {
  override name = 'UnprocessableEntityError';
}
export class RateLimitError extends APIError {
  override name = 'RateLimitError';
  /** Seconds to wait, from `retry-after-ms` / `retry-after` (null when absent). */
  get retryAfter(): number | null {
    const ms = parseRetryAfterMs(this.headers, Date.now());
    return ms === undefined ? null : ms / 1000;
  }
}
export class InternalServerError extends APIError {
  override name = 'InternalServerError';
}
export class BadGatewayError extends InternalServerError {
  override name = 'BadGatewayError';
}
export class ServiceUnavailableError extends InternalServerError {
  override name = 'ServiceUnavailableError';
}
export class GatewayTimeoutError extends InternalServerError {
  override name = 'GatewayTimeoutError';
}

type APIErrorClass = new (status: number, error: APIErrorBody | undefined, message: string | undefined, headers: Headers | undefined, inBand?: boolean) => APIError;

export function errorClassForStatus(status: number): APIErrorClass {
  switch (status) {
    case 400:
      return BadRequestError;
    case 401:
      return AuthenticationError;
    case 403:
      return PermissionDeniedError;
    case 404:
      return NotFoundError;
    case 408:
      return RequestTimeoutError;
    case 409:
      return ConflictError;
    case 413:
      return PayloadTooLargeError;
    case 422:
      return UnprocessableEntityError;
    case 429:
      return RateLimitError;
    case 502:
      return BadGatewayError;
    case 503:
      return ServiceUnavailableError;
    case 504:
      return GatewayTimeoutError;
    default:
      return status >= 500 ? InternalServerError : APIError;
  }
}

/** The request never got an HTTP answer (DNS, refused connection, reset, TLS, ...). */
export class APIConnectionError extends LayerNetError {
  override name = 'APIConnectionError';
  constructor(message = 'connection error', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** No answer within `timeout` milliseconds. */
export class APIConnectionTimeoutError extends APIConnectionError {
  override name = 'APIConnectionTimeoutError';
  constructor(message = 'request timed out', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The caller's own `signal` aborted the request. */
export class APIUserAbortError extends LayerNetError {
  override name = 'APIUserAbortError';
  constructor(message = 'request was aborted', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A response did not match the published schema. */
export class APIResponseValidationError extends LayerNetError {
  override name = 'APIResponseValidationError';
  constructor(
    message: string,
    readonly requestId: string | null,
  ) {
    super(message);
  }
}

/** Why `verify: true` refused a response (chain failures plus the SDK's own checks). */
export type AttestationFailure =
  | ChainFailure
  | 'unavailable'
  | 'malformed_record'
  | 'unknown_edge_key'
  | 'bad_ticket_signature'
  | 'ticket_mismatch'
  | 'wrong_prefix'
  | 'token_mismatch'
  | 'text_mismatch'
  | 'summary_mismatch'
  | 'usage_mismatch'
  | 'route_mismatch';

/** `verify` was on and the job's attestations did not check out: the answer must not be trusted. */
export class AttestationError extends LayerNetError {
  override name = 'AttestationError';
  constructor(
    readonly reason: AttestationFailure,
    readonly detail: string,
    readonly jobId: string | null,
    readonly context: { attempt?: number; agentId?: string; hop?: number } = {},
    options?: { cause?: unknown },
  ) {
    super(`attestation check failed (${reason}) for job ${jobId ?? '?'}: ${detail}`, options);
  }
}

/**
 * Whether a job's check outcome says it was found bad: a checker's re-execution disagrees with
 * the answer (`fail`) or a dispute upheld the accusation (`upheld`).
 */
export function isJobFoundBad(check: JobCheck | null | undefined): boolean {
  return check?.status === 'fail' || check?.status === 'upheld';
}

/**
 * A re-execution check found the job bad: its attestation chain was signed correctly, but an
 * independent agent that re-ran it got another answer (`check.status` `fail`), or the dispute
 * that followed convicted the hop (`upheld`). The answer must not be trusted. A job found bad
 * against a hop is not charged: `refundedMicroUsd` went back to the key's spend.
 *
 * Thrown by `verify` (and `client.jobs.verify`) when the job's record says so, and by
 * `client.jobs.check(id, { throwIfBad: true })`.
 *
 * @example
 * try {
 *   await client.jobs.verify(jobId);
 * } catch (err) {
 *   if (err instanceof JobFoundBadError) console.log(err.check.status, err.blame?.agent_id, err.refundedMicroUsd);
 *   else throw err;
 * }
 */
export class JobFoundBadError extends LayerNetError {
  override name = 'JobFoundBadError';
  constructor(
    readonly jobId: string,
    readonly check: JobCheck,
  ) {
    const why = check.verdict ? ` (${check.verdict.reason}: ${check.verdict.detail})` : '';
    const who = check.blame ? ` at hop ${check.blame.hop} (agent ${check.blame.agent_id})` : '';
    const refund = check.refunded_micro_usd !== undefined ? `; ${check.refunded_micro_usd} micro-USD refunded` : '';
    super(`job ${jobId} was found bad by a re-execution check: ${check.status}${who}${why}${refund}`);
  }

  /** The hop found at fault, when the check named one. */
  get blame(): JobCheck['blame'] {
    return this.check.blame;
  }

  /** Micro-USD handed back to the key's spend (0 when nothing was refunded). */
  get refundedMicroUsd(): number {
    return this.check.refunded_micro_usd ?? 0;
  }
}

/**
 * Milliseconds to wait according to `retry-after-ms` or `retry-after` (seconds or an HTTP date);
 * undefined when absent or unparsable.
 */
export function parseRetryAfterMs(headers: Headers | undefined, now: number): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get('retry-after-ms');
  if (ms !== null && ms.trim() !== '') {
    const n = Number(ms);
    if (Number.isFinite(n) && n >= 0) return n;
  }
  const ra = headers.get('retry-after');
  if (ra === null || ra.trim() === '') return undefined;
  const seconds = Number(ra);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const date = Date.parse(ra);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}
