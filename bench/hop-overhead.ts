/**
 * Where a chain's extra time per token goes, in one process: the `small` model split 3 ways,
 * run (a) directly, span after span (`forwardChain`), and (b) as three in-process agents over
 * loopback HTTP (`startChain`, the edge's default chunking). For (b) it measures the time spent
 * inside each span's `forward` (onnxruntime) and inside each agent's frame handling, so the
 * difference to (a) splits into compute, the agents' own per-frame work, and the transport.
 *
 *   npm run bench:hops -- [--threads 2] [--tokens 96] [--rounds 3]
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { buildModel } from '../pool-agent/model/index.js';
import { argmax, forwardChain, loadSpan } from '../pool-agent/runtime/index.js';
import { AgentCore } from '../pool-agent/server/agent.js';
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
// Time inside the downstream agents' frame handling (hop 1's includes its call to hop 2).
const frames = { ms: 0, count: 0 };
const core = AgentCore.prototype as unknown as { handleFrame: (b: Uint8Array) => Promise<unknown> };
const handleFrame = core.handleFrame;
core.handleFrame = async function (this: unknown, bytes: Uint8Array) {
  const t = performance.now();
  try {
    return await handleFrame.call(this, bytes);
  } finally {
    frames.ms += performance.now() - t;
    frames.count++;
  }
};

const edge = await createTestEdge();
const chain = await startChain({ edge, spans, agentIdPrefix: 'hop' });
const PROMPT = Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 100 + ((i * 7919) % 30000)));
const rows: Record<string, Record<string, number>> = {};
try {
  for (let round = 0; round <= rounds; round++) {
    const sessions = spans.map((s) => s.openSession());
    let out = await forwardChain(sessions, Int32Array.from(PROMPT));
    let t = performance.now();
    for (let i = 0; i < N; i++) out = await forwardChain(sessions, Int32Array.of(argmax(out.logits)));
    const direct = (performance.now() - t) / N;
    sessions.forEach((s) => s.dispose());

    inside.fill(0);
    frames.ms = frames.count = 0;
    const { signed } = await edge.ticket({ route: chain.route, modelId, promptIds: PROMPT, maxTokens: N + 1, patch: { chunking: { maxSteps: 16, maxDelayMs: 50 } } });
    t = performance.now();
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    const http = (performance.now() - t) / (N + 1);
    if (res.events.at(-1)?.type !== 'done') throw new Error(`job failed: ${JSON.stringify(res.events.at(-1) ?? res.error)}`);
    if (round === 0) continue; // warm-up
    const per = (x: number) => +(x / (N + 1)).toFixed(2);
    // hop 1's handling nests hop 2's: own work of both = handled - hop 2 counted twice - compute.
    const hop2 = per(inside[2]!);
    rows[`round ${round}`] = {
      'direct ms/token': +direct.toFixed(2),
      'agents over HTTP ms/token': +http.toFixed(2),
      'inside forward, all spans': per(inside.reduce((a, b) => a + b, 0)),
      'downstream frame handling (nested)': per(frames.ms),
      'hop 2 forward': hop2,
    };
  }
  console.log(`small split [0:3 3:5 5:8], ${threads} onnxruntime threads, ${N} tokens, one process`);
  console.table(rows);
  console.log(JSON.stringify({ bench: 'hop-overhead', threads, tokens: N, rows }));
} finally {
  await chain.close();
  await Promise.all(spans.map((s) => s.close()));
}
