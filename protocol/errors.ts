/**
 * One error vocabulary for the edge, the agents and the SDK, in the OpenAI envelope:
 * `{"error": {"message", "type", "code", "param"}}`. The code decides the HTTP status.
 *
 * @example
 * throw new ApiError('no_route', 'no route meets max_price 0.1');
 */
import { z } from 'zod';
import { ERROR_CODES, isErrorCode, type ErrorCode } from './error-codes.js';

export { ERROR_CODES, isErrorCode, type ErrorCode };

export const errorEnvelopeSchema = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    code: z.string().nullable(),
    param: z.string().nullable(),
  }),
});
export type ErrorEnvelope = z.infer<typeof errorEnvelopeSchema>;

export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly status: number;
  readonly type: string;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly param: string | null = null,
    /** Seconds, for 429/503. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.status = ERROR_CODES[code].status;
    this.type = ERROR_CODES[code].type;
  }

  toEnvelope(): ErrorEnvelope {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}
