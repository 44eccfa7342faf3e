/**
 * Stands in for pool-agent/runtime/local-pipeline.ts inside a `pool-agent serve` process started
 * with `cheating-serve/preload.mjs` (see hooks.mjs): the same module, except that `loadAgentSpan`
 * returns a cheating span when LAYERNET_TEST_CHEAT names a cheat (test/support/cheating-span.ts).
 */
import { loadAgentSpan as honestAgentSpan } from '../../../pool-agent/runtime/local-pipeline.js';
import { CHEAT_ENV, cheatingSpan, parseCheat } from '../cheating-span.js';

export * from '../../../pool-agent/runtime/local-pipeline.js';

export const loadAgentSpan: typeof honestAgentSpan = async (modelDir, layers, settings, onProgress) => {
  const text = process.env[CHEAT_ENV];
  if (!text) return honestAgentSpan(modelDir, layers, settings, onProgress);
  return cheatingSpan(modelDir, layers, parseCheat(text), (dir, l) => honestAgentSpan(dir, l, settings, onProgress));
};
