/**
 * Where a chain's extra time per token goes, in one process: the `small` model split 3 ways,
 * run (a) directly, span after span (`forwardChain`), and as three in-process agents on loopback
 * (`startChain`, the edge's default chunking), (b) over links (the default hop transport) and
 * (c) with a head that sends every step by POST. For (b) and (c) it measures the time spent
 * inside each span's `forward` (onnxruntime), so the difference to (a) is the agents' own
 * per-frame work and the transport.
 *
 *   npm run bench:hops -- [--threads 2] [--tokens 96] [--rounds 3]
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { buildModel } from '../pool-agent/model/index.js';
import { argmax, forwardChain, loadSpan } from '../pool-agent/runtime/index.js';
import { createTestEdge, runJob, startChain } from '../test/support/agents.js';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '2' }, tokens: { type: 'string', default: '96' }, rounds: { type: 'string', default: '3' } } });
const threads = Number(values.threads);
const N = Number(values.tokens);
const rounds = Number(values.rounds);

const { modelId, dir } = await buildModel({ preset: 'small', dtype: 'float32', seed: 0, outDir: join('.models', 'small') });
const layout: [number, number][] = [[0, 3], [3, 5], [5, 8]];
const spans = await Promise.all(layout.map((l) => loadSpan(dir, l, { provider: 'cpu', intraOpThreads: threads })));

// Time inside each span session's forward, by span.
const inside = layout.map(() => 0);
const owner = new WeakMap<object, number>();
spans.forEach((span, i) => {
  const open = span.openSession.bind(span);
  span.openSession = () => {
    const s = open();
    owner.set(s, i);
    return s;
  };
});
const proto = Object.getPrototypeOf(spans[0]!.openSession()) as { forward: (...a: unknown[]) => Promise<unknown> };
const forward = proto.forward;
proto.forward = async function (this: object, ...args: unknown[]) {
  const t = performance.now();
  try {
    return await forward.apply(this, args);
  } finally {
    const i = owner.get(this);
    if (i !== undefined) inside[i]! += performance.now() - t;
  }
};
const edge = await createTestEdge();
const linked = await startChain({ edge, spans, agentIdPrefix: 'hop' });
const posted = await startChain({ edge, spans, agentIdPrefix: 'post', agentOptions: (i) => (i === 0 ? { hopTransport: 'post' } : {}) });
const PROMPT = Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 100 + ((i * 7919) % 30000)));
const rows: Record<string, Record<string, number>> = {};
const per = (x: number) => +(x / (N + 1)).toFixed(2);

/** One job through `chain`: ms per token, and ms per token inside the spans. */
async function viaAgents(chain: typeof linked): Promise<[number, number]> {
  inside.fill(0);
  const { signed } = await edge.ticket({ route: chain.route, modelId, promptIds: PROMPT, maxTokens: N + 1, patch: { chunking: { maxSteps: 16, maxDelayMs: 50 } } });
  const t = performance.now();
  const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
  const total = (performance.now() - t) / (N + 1);
  if (res.events.at(-1)?.type !== 'done') throw new Error(`job failed: ${JSON.stringify(res.events.at(-1) ?? res.error)}`);
  return [+total.toFixed(2), per(inside.reduce((a, b) => a + b, 0))];
}

try {
  for (let round = 0; round <= rounds; round++) {
    const sessions = spans.map((s) => s.openSession());
    let out = await forwardChain(sessions, Int32Array.from(PROMPT));
    const t = performance.now();
    for (let i = 0; i < N; i++) out = await forwardChain(sessions, Int32Array.of(argmax(out.logits)));
    const direct = (performance.now() - t) / N;
    sessions.forEach((s) => s.dispose());
    const [link, linkInside] = await viaAgents(linked);
    const [post, postInside] = await viaAgents(posted);
    if (round === 0) continue; // warm-up
    rows[`round ${round}`] = {
      'direct ms/token': +direct.toFixed(2),
      'links ms/token': link,
      'links: inside spans': linkInside,
      'POST ms/token': post,
      'POST: inside spans': postInside,
    };
  }
  console.log(`small split [0:3 3:5 5:8], ${threads} onnxruntime threads, ${N} tokens, one process`);
  console.table(rows);
  console.log(JSON.stringify({ bench: 'hop-overhead', threads, tokens: N, rows }));
} finally {
  await Promise.all([linked.close(), posted.close()]);
  await Promise.all(spans.map((s) => s.close()));
}
