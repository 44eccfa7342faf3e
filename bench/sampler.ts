/**
 * Cost of one `sampleToken` call per sampling mode on a vocabulary-sized row of logits, next to a
 * plain argmax pass over the same row (the floor any sampler pays). The re-execution check replays
 * the sampler once per generated token, so this is most of its "judge" time.
 *
 *   npm run bench:sampler -- [--vocab 32000] [--calls 2000]
 */
import { parseArgs } from 'node:util';
import { argmax, sampleToken, type SamplingParams } from '../pool-agent/runtime/sampler.js';

const { values } = parseArgs({ options: { vocab: { type: 'string', default: '32000' }, calls: { type: 'string', default: '2000' } } });
const V = Number(values.vocab);
const calls = Number(values.calls);

// Logits shaped like a language model's: a long tail near -4 and a few dozen likely tokens.
let s = 1;
const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
const logits = Float32Array.from({ length: V }, () => -4 + 2 * rand());
for (let i = 0; i < 50; i++) logits[Math.floor(rand() * V)] = 2 + 6 * rand();

const modes: Record<string, SamplingParams> = {
  'greedy (argmax)': { temperature: 0, topP: 1, topK: 0, seed: 1 },
  'T 0.8, top-k 40': { temperature: 0.8, topP: 1, topK: 40, seed: 1 },
  'T 0.8, top-k 40, top-p 0.95': { temperature: 0.8, topP: 0.95, topK: 40, seed: 1 },
  'T 0.8, top-p 0.95': { temperature: 0.8, topP: 0.95, topK: 0, seed: 1 },
  'T 0.8 (full softmax)': { temperature: 0.8, topP: 1, topK: 0, seed: 1 },
};

function time(fn: (i: number) => unknown): number {
  for (let i = 0; i < 200; i++) fn(i);
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) fn(i);
  return (performance.now() - t0) / calls;
}

// Alternate the baseline with each mode so load drift hits both alike.
const rows: Record<string, { 'ms per call': number; 'x argmax pass': number }> = {};
for (const [name, params] of Object.entries(modes)) {
  const base = time(() => argmax(logits));
  const ms = time((i) => sampleToken(logits, params, i));
  rows[name] = { 'ms per call': +ms.toFixed(4), 'x argmax pass': +(ms / base).toFixed(2) };
}
console.log(`vocabulary ${V}, ${calls} calls per mode`);
console.table(rows);
console.log(JSON.stringify({ bench: 'sampler', vocab: V, rows }));
