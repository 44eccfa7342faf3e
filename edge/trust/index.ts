/**
 * The edge's trust policy, pure functions only: which jobs to check (sampling.ts), reputation,
 * slashing and exclusion (reputation.ts), disputes (dispute.ts), the numbers (policy.ts).
 * The math behind them: docs/trust.md.
 *
 * @example
 * import { checkRate, shouldCheck, importCheckSecret, openDispute, transition } from './trust/index.js';
 */
export * from './policy.js';
export * from './sampling.js';
export * from './reputation.js';
export * from './dispute.js';
