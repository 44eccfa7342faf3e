/**
 * Re-execution checks on the agent: runCheck re-runs a finished job of another route on this
 * agent's copy of the model; runHopCheck re-runs one hop of it on a span of that hop's layers;
 * the verdict logic is protocol/check.ts.
 *
 * @example
 * import { runCheck, runHopCheck } from './verify/index.js';
 */
export { runCheck, type RunCheckInput, type SpanLoader } from './checker.js';
export { runHopCheck, type RunHopCheckInput } from './hop-check.js';
