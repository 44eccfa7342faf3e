// `node --import tsx --import test/support/cheating-serve/preload.mjs pool-agent/main.ts serve ...`:
// a real `pool-agent serve` process whose span is loaded by ./pipeline.ts (a cheater when
// LAYERNET_TEST_CHEAT is set). Test-only; the agent's code has no hook for it.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
