/**
 * Retry policy: which failures are retried and how long to wait (capped exponential backoff with
 * jitter, overridden by the server's `retry-after-ms` / `retry-after`). Plain functions so the
 * timing is testable with a fake clock.
 *
 * @example
 * const wait = retryDelayMs({ retriesSoFar: 1, headers: res.headers, now: Date.now(), random: Math.random });
 */
import { parseRetryAfterMs } from './errors.js';

export const INITIAL_RETRY_DELAY_MS = 500;
export const MAX_RETRY_DELAY_MS = 8_000;
/** A `retry-after` longer than this is ignored in favour of the backoff (as openai-node does). */
export const MAX_RETRY_AFTER_MS = 60_000;

/** Statuses worth another try: timeouts, conflicts (lock contention), rate limits, server errors. */
export function isRetryableStatus(status: number, headers?: Headers): boolean {
  const hint = headers?.get('x-should-retry');
  if (hint === 'true') return true;
  if (hint === 'false') return false;
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

export interface RetryDelayInput {
  /** Retries already made before this one (0 for the first retry). */
  retriesSoFar: number;
  headers?: Headers | undefined;
  now: number;
  random: () => number;
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * `retry-after(-ms)` when the server sent a usable one (0..60 s), else
 * min(initial * 2^n, max) minus up to 25% jitter.
 */
export function retryDelayMs(input: RetryDelayInput): number {
  const fromServer = parseRetryAfterMs(input.headers, input.now);
  if (fromServer !== undefined && fromServer <= MAX_RETRY_AFTER_MS) return fromServer;
  const initial = input.initialDelayMs ?? INITIAL_RETRY_DELAY_MS;
  const max = input.maxDelayMs ?? MAX_RETRY_DELAY_MS;
  const base = Math.min(initial * 2 ** input.retriesSoFar, max);
  const jitter = 1 - Math.min(1, Math.max(0, input.random())) * 0.25;
  return base * jitter;
}

/** Sleeps `ms`, rejecting early with the signal's reason when it aborts. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
