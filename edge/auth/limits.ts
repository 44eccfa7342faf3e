/**
 * Per-key rate limits (requests and tokens per minute, fixed one-minute windows counted in the
 * registry so every edge isolate shares them) and spending budgets.
 *
 * Tokens are reserved up front (prompt + max tokens) and the reservation is corrected when the
 * job ends, so a burst of long requests cannot overshoot the limit while they run.
 *
 * @example
 * await checkBudget(auth, spentLocally);
 * const reservation = await reserveUsage(auth, promptTokens + maxTokens, deps);
 */
import { ApiError } from '../../protocol/errors.js';
import { usageWindowStart } from '../../db/registry-contract.js';
import type { AuthContext, EdgeDeps } from '../deps.js';

export interface UsageReservation {
  windowStart: number;
  tokens: number;
}

/** 403 when the key's budget is spent. */
export function checkBudget(auth: AuthContext): void {
  const { budgetMicroUsd, spentMicroUsd } = auth.key;
  if (budgetMicroUsd !== null && spentMicroUsd >= budgetMicroUsd) {
    throw new ApiError('budget_exceeded', 'insufficient budget: this API key has spent its budget');
  }
}

/** Counts one request and `tokens` tokens; 429 with retry-after when a limit is passed. */
export async function reserveUsage(auth: AuthContext, tokens: number, deps: Pick<EdgeDeps, 'store' | 'clock'>): Promise<UsageReservation> {
  const now = deps.clock.now();
  const windowStart = usageWindowStart(now);
  const { requestsPerMinute: rpm, tokensPerMinute: tpm } = auth.key;
  if (rpm === null && tpm === null) return { windowStart, tokens: 0 };
  const counted = tpm === null ? 0 : tokens;
  const totals = await deps.store.addUsage(auth.apiKeyId, windowStart, { requests: 1, tokens: counted });
  const retryAfter = Math.max(1, Math.ceil((windowStart + 60_000 - now) / 1000));
  if (rpm !== null && totals.requests > rpm) {
    throw new ApiError('rate_limit_exceeded', `rate limit: ${rpm} requests per minute`, null, retryAfter);
  }
  if (tpm !== null && totals.tokens > tpm) {
    // The refused request's tokens are handed back; the request itself still counts.
    await deps.store.addUsage(auth.apiKeyId, windowStart, { requests: 0, tokens: -counted });
    if (tokens > tpm) throw new ApiError('rate_limit_exceeded', `this request needs ${tokens} tokens, over the limit of ${tpm} tokens per minute`, 'max_tokens');
    throw new ApiError('rate_limit_exceeded', `rate limit: ${tpm} tokens per minute`, null, retryAfter);
  }
  return { windowStart, tokens: counted };
}

/** Replaces the reservation by the tokens actually used (off the response path). */
export function settleUsage(auth: AuthContext, reservation: UsageReservation, usedTokens: number, deps: Pick<EdgeDeps, 'store'>): Promise<unknown> {
  if (auth.key.tokensPerMinute === null || reservation.tokens === usedTokens) return Promise.resolve();
  return deps.store.addUsage(auth.apiKeyId, reservation.windowStart, { requests: 0, tokens: usedTokens - reservation.tokens });
}
