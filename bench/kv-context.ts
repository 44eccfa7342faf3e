/**
 * Decode speed as the context grows, for the two KV-cache layouts of the same model
 * (protocol/manifest.ts `kvCache`): 'full' (standard exports: the whole cache goes into and out
 * of onnxruntime every step) and 'append' (what the builder writes: the cache stays in the
 * runtime's buffers, only the new rows come out). Both sessions decode side by side, taking turns
 * window by window, so load on the machine hits both alike. Also times a long prefill, which
 * the 'append' layout must not slow down.
 *
 *   npm run bench:context -- [--preset small] [--dtype float32|float16] [--threads 2] [--positions 1536] [--window 64] [--prefill 512]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildModel, createProgressBar, type PresetName } from '../pool-agent/model/index.js';
import { argmax, loadSpan, type LoadedSpan, type SpanSession } from '../pool-agent/runtime/index.js';
import type { KvCacheLayout, ModelDtype } from '../protocol/manifest.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'small' },
    dtype: { type: 'string', default: 'float32' },
    threads: { type: 'string', default: '2' },
    positions: { type: 'string', default: '1536' },
    window: { type: 'string', default: '64' },
    prefill: { type: 'string', default: '512' },
  },
});
const preset = values.preset as PresetName;
const dtype = values.dtype as ModelDtype;
const threads = Number(values.threads);
const positions = Number(values.positions);
const windowLen = Number(values.window);
const prefillLen = Number(values.prefill);
const LAYOUTS: KvCacheLayout[] = ['append', 'full'];

const spans = new Map<KvCacheLayout, LoadedSpan>();
for (const kvCache of LAYOUTS) {
  const outDir = join('.models', `${preset}${dtype === 'float16' ? '-fp16' : ''}${kvCache === 'full' ? '-fullkv' : ''}`);
  const bar = createProgressBar(`model ${preset} ${dtype} ${kvCache}`);
  const { dir, manifest } = await buildModel({ preset, dtype, seed: 0, outDir, kvCache, onProgress: bar.update });
  if (positions + 1 > manifest.architecture.maxPositionEmbeddings) throw new Error(`--positions must stay under ${manifest.architecture.maxPositionEmbeddings}`);
  spans.set(kvCache, await loadSpan(dir, [0, manifest.architecture.numLayers], { provider: 'cpu', intraOpThreads: threads }));
}
const ids = (n: number) => Int32Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 100 + ((i * 7919) % 30000)));

async function step(s: SpanSession, input: Int32Array): Promise<number> {
  const out = await s.forward({ kind: 'tokens', ids: input });
  if (out.kind !== 'logits') throw new Error('expected logits from the whole model');
  return argmax(out.logits);
}

try {
  // Prefill: alternate 3 times each, keep the best.
  const prefill: Record<string, number> = {};
  for (let rep = 0; rep < 3; rep++) {
    for (const kvCache of LAYOUTS) {
      const s = spans.get(kvCache)!.openSession();
      const t = performance.now();
      await step(s, ids(prefillLen));
      const ms = performance.now() - t;
      prefill[kvCache] = Math.min(prefill[kvCache] ?? Infinity, ms);
      s.dispose();
    }
  }

  // Decode: both sessions start from the same 32-token prompt and take turns, one window each.
  const sessions = new Map(LAYOUTS.map((k) => [k, spans.get(k)!.openSession()] as const));
  const next = new Map<KvCacheLayout, number>();
  for (const [k, s] of sessions) next.set(k, await step(s, ids(32)));
  const rows: { context: number; append: number; full: number; ratio: number }[] = [];
  for (let pos = 32; pos + windowLen <= positions; pos += windowLen) {
    const ms: Record<string, number> = {};
    for (const [k, s] of sessions) {
      let token = next.get(k)!;
      const t = performance.now();
      for (let i = 0; i < windowLen; i++) token = await step(s, Int32Array.of(token));
      ms[k] = (performance.now() - t) / windowLen;
      next.set(k, token);
    }
    rows.push({ context: pos + windowLen, append: +ms.append!.toFixed(2), full: +ms.full!.toFixed(2), ratio: +(ms.full! / ms.append!).toFixed(3) });
  }
  for (const s of sessions.values()) s.dispose();

  console.log(`${preset} ${dtype}, ${threads} onnxruntime threads; decode ms/token per window of ${windowLen} tokens, layouts taking turns`);
  console.table(rows.filter((_, i) => i % 4 === 3 || i === 0 || i === rows.length - 1));
  console.log(`prefill of ${prefillLen} tokens (best of 3): append ${prefill.append!.toFixed(1)} ms, full ${prefill.full!.toFixed(1)} ms (full / append ${(prefill.full! / prefill.append!).toFixed(3)})`);
  console.log(JSON.stringify({ bench: 'kv-context', preset, dtype, threads, window: windowLen, prefillLen, prefill, rows }));
} finally {
  for (const s of spans.values()) await s.close();
}
