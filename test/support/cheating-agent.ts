/**
 * A `pool-agent serve` process that cheats as `cheat` says (test/support/cheating-span.ts): the
 * spec of a network agent whose span is swapped for a cheating one by the cheating-serve preload.
 *
 * @example
 * const evil = await net.addAgent(cheatingAgent({ name: 'head', layers: [0, 2], price: 0.01 }, { kind: 'perturb', scale: 0.03 }));
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { CHEAT_ENV, type Cheat } from './cheating-span.js';
import type { AgentSpec } from './network.js';

const PRELOAD = pathToFileURL(resolve(import.meta.dirname, 'cheating-serve/preload.mjs')).href;

export function cheatingAgent(spec: AgentSpec, cheat: Cheat): AgentSpec {
  return { ...spec, env: { ...spec.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${PRELOAD}`.trim(), [CHEAT_ENV]: JSON.stringify(cheat) } };
}
