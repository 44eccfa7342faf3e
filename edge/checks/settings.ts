/**
 * How re-execution checks run at this edge (from CHECK_SECRET, CHECK_RATE_OVERRIDE and the trust
 * policy). Its own module so the edge's deps and the checks do not import each other.
 *
 * @example
 * const checks: CheckSettings = { key: await importCheckSecret(secret), rateOverride: null };
 */
import type { TrustPolicy } from '../trust/policy.js';

export interface CheckSettings {
  /** HMAC key from CHECK_SECRET (`importCheckSecret`); null: checks are off. */
  key: CryptoKey | null;
  /** Forces the check rate in [0, 1] (CHECK_RATE_OVERRIDE: tests, operators); null: policy. */
  rateOverride: number | null;
  policy?: TrustPolicy;
  /** One checker's answer must come within this, ms (default 20 s). */
  timeoutMs?: number;
  /**
   * The whole check, dispute included, ends within this, ms (default 25 s: workerd gives
   * waitUntil work about 30 s after the response). A dispute cut short stays open.
   */
  budgetMs?: number;
}

/**
 * Each checker call's timeout within a budget ending at `budgetEnd`: `perCheckMs`, cut to what
 * the budget has left; 0 once under a second is left (stop asking: no check finishes in less).
 */
export function checkTimeouts(clock: { now(): number }, budgetEnd: number, perCheckMs: number): () => number {
  return () => {
    const left = budgetEnd - clock.now();
    return left < 1_000 ? 0 : Math.min(perCheckMs, left);
  };
}
