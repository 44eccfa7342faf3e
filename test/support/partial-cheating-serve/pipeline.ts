/**
 * Stands in for pool-agent/runtime/local-pipeline.ts inside a `pool-agent serve` process started
 * with `partial-cheating-serve/preload.mjs` (see hooks.mjs): the same module, except that
 * `loadAgentSpan` returns a span that cheats on the jobs ../partial-cheat.ts picks when
 * LAYERNET_TEST_CHEAT names a cheat (../cheating-span.ts).
 */
import { loadAgentSpan as honestAgentSpan } from '../../../pool-agent/runtime/local-pipeline.js';
import { CHEAT_ENV, cheatingSpan, parseCheat } from '../cheating-span.js';
import { parseSchedule, scheduledCheatingSpan } from '../partial-cheat.js';

export * from '../../../pool-agent/runtime/local-pipeline.js';

export const loadAgentSpan: typeof honestAgentSpan = async (modelDir, layers, settings, onProgress) => {
  const text = process.env[CHEAT_ENV];
  if (!text) return honestAgentSpan(modelDir, layers, settings, onProgress);
  const schedule = parseSchedule(process.env);
  const honest = await honestAgentSpan(modelDir, layers, settings, onProgress);
  // The cheat runs on the honest span's sessions when it computes the same layers (perturb, sampling).
  let shared = false;
  const cheating = await cheatingSpan(modelDir, layers, parseCheat(text), (dir, l) => {
    if (dir === modelDir && l[0] === layers[0] && l[1] === layers[1]) {
      shared = true;
      return Promise.resolve(honest);
    }
    return honestAgentSpan(dir, l, settings, onProgress);
  });
  return scheduledCheatingSpan(honest, cheating, schedule, async () => {
    await cheating.close();
    if (!shared) await honest.close();
  });
};
