// `node --import tsx --import test/support/partial-cheating-serve/preload.mjs pool-agent/main.ts serve ...`:
// a real `pool-agent serve` process that cheats on some of its jobs (../partial-cheat.ts) when
// LAYERNET_TEST_CHEAT names a cheat. Test-only; the agent's code has no hook for it.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
