/**
 * Re-execution checks on the agent: runCheck re-runs a finished job of another route on this
 * agent's copy of the model; the verdict logic is protocol/check.ts.
 *
 * @example
 * import { runCheck } from './verify/index.js';
 */
export { runCheck, type RunCheckInput, type SpanLoader } from './checker.js';
