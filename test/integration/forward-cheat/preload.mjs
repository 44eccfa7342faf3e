// `node --import tsx --import test/integration/forward-cheat/preload.mjs pool-agent/main.ts serve ...`:
// a real `pool-agent serve` process that, when LAYERNET_TEST_FORWARD_CHEAT is set, hands the next
// hop other activations than it attested (./remote-stage.ts). Test-only; the agent's code has no
// hook for it.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
