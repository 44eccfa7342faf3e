/**
 * Why one route attempt of a generation failed, and whom it blames (the agent excluded, cooled
 * down and recorded as failed; null: the whole route), with the evidence a bad attestation
 * carries.
 *
 * @example
 * throw new AttemptFailure('timeout', 'head agent timed out', head.agentId, undefined, url);
 */

/** A transport error with its cause: fetch's own message ("fetch failed") names neither the reason nor the peer. */
export function transportError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (!(err.cause instanceof Error)) return err.message;
  const cause: Error & { code?: unknown } = err.cause;
  const code = typeof cause.code === 'string' && !cause.message.includes(cause.code) ? `${cause.code}: ` : '';
  return `${err.message} (${code}${cause.message})`;
}

/** Why an attempt failed, and whom to blame. */
export class AttemptFailure extends Error {
  constructor(
    readonly kind: 'unreachable' | 'http_status' | 'timeout' | 'stream' | 'agent_error' | 'bad_attestation' | 'truncated',
    message: string,
    /** Agent to exclude, cool down and record a failure for (null: the whole route). */
    readonly agentId: string | null,
    readonly evidence?: unknown,
    /** The agent URL the edge failed to reach or got a bad answer from (logged, for operators). */
    readonly url?: string,
  ) {
    super(message);
  }
}
