/**
 * Prefill and decode throughput of the `small` model (fp32, ~100M parameters) served as one span
 * versus 2 and 4 spans chained in one process, same thread budget, alternating repetitions.
 *
 * Two measurements: whole runs (prefill + decode) alternating between layouts, and an interleaved
 * decode where the layouts take turns token by token (the fairer comparison on a busy machine).
 * Throughput is given per wall-clock second and per CPU-second of this process.
 *
 * Usage: node --import tsx bench/runtime-throughput.ts [--threads N] [--reps N] [--prompt N] [--decode N]
 *          [--preset small|tiny|1b] [--dtype float32|float16] [--provider cpu|cuda|auto] [--spin]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildModel, createProgressBar, type PresetName } from '../pool-agent/model/index.js';
import { argmax, forwardChain, loadSpan, type LoadedSpan, type SpanSession } from '../pool-agent/runtime/index.js';
import type { ModelDtype } from '../protocol/manifest.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    reps: { type: 'string', default: '3' },
    prompt: { type: 'string', default: '128' },
    decode: { type: 'string', default: '64' },
    preset: { type: 'string', default: 'small' },
    dtype: { type: 'string', default: 'float32' },
    provider: { type: 'string', default: 'cpu' },
    spin: { type: 'boolean', default: false },
  },
});
const threads = Number(values.threads);
const reps = Number(values.reps);
const promptLen = Number(values.prompt);
const decodeLen = Number(values.decode);
const preset = values.preset as PresetName;
const dtype = values.dtype as ModelDtype;
const provider = values.provider as 'cpu' | 'cuda' | 'auto';

const outDir = join('.models', dtype === 'float32' ? preset : `${preset}-fp16`);
const bar = createProgressBar(`model ${preset} ${dtype}`);
const { manifest, modelId } = await buildModel({ preset, dtype, seed: 0, outDir, onProgress: bar.update });
bar.finish();
const L = manifest.architecture.numLayers;
console.log(`model ${modelId.slice(0, 16)}… ${L} layers, hidden ${manifest.architecture.hiddenSize}; threads ${threads}, spinning ${values.spin ? 'on' : 'off'}; prompt ${promptLen}, decode ${decodeLen}, reps ${reps}`);

function layout(n: number): [number, number][] {
  const per = L / n;
  return Array.from({ length: n }, (_, i) => [i * per, (i + 1) * per] as [number, number]);
}
const layouts = [1, 2, 4].map((n) => ({ name: `${n} span${n > 1 ? 's' : ''}`, ranges: layout(n) }));
const loaded = new Map<string, LoadedSpan[]>();
for (const l of layouts) {
  const spans: LoadedSpan[] = [];
  for (const r of l.ranges) spans.push(await loadSpan(outDir, r, { provider, intraOpThreads: threads, interOpThreads: 1, allowSpinning: values.spin }));
  loaded.set(l.name, spans);
  console.log(`loaded ${l.name} on ${spans[0]!.provider}`);
}

const prompt = Int32Array.from({ length: promptLen }, (_, i) => 1 + ((i * 7919) % 31999));

interface Run {
  prefill: number;
  decode: number;
  /** Tokens per CPU-second of this process (user + system, all onnxruntime threads). */
  prefillCpu: number;
  decodeCpu: number;
  tokens: number[];
}

const cpuSeconds = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1e6;

async function runOnce(spans: LoadedSpan[]): Promise<Run> {
  const sessions: SpanSession[] = spans.map((s) => s.openSession());
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let out = await forwardChain(sessions, prompt);
  const t1 = performance.now();
  const c1 = process.cpuUsage();
  const tokens: number[] = [argmax(out.logits)];
  for (let i = 0; i < decodeLen; i++) {
    out = await forwardChain(sessions, Int32Array.of(tokens[tokens.length - 1]!));
    tokens.push(argmax(out.logits));
  }
  const t2 = performance.now();
  const c2 = process.cpuUsage();
  for (const s of sessions) s.dispose();
  return {
    prefill: (promptLen * 1000) / (t1 - t0),
    decode: (decodeLen * 1000) / (t2 - t1),
    prefillCpu: promptLen / (cpuSeconds(c1) - cpuSeconds(c0)),
    decodeCpu: decodeLen / (cpuSeconds(c2) - cpuSeconds(c1)),
    tokens,
  };
}

// Warm-up (first runs allocate arenas).
for (const l of layouts) await runOnce(loaded.get(l.name)!);

type Metric = 'prefill' | 'decode' | 'prefillCpu' | 'decodeCpu';
const METRICS: Metric[] = ['prefill', 'decode', 'prefillCpu', 'decodeCpu'];
const runs = new Map<string, Run[]>(layouts.map((l) => [l.name, []]));
let reference: number[] | undefined;
for (let r = 0; r < reps; r++) {
  // Rotate the order so no layout always runs first or last.
  const order = layouts.map((_, i) => layouts[(i + r) % layouts.length]!);
  for (const l of order) {
    const res = await runOnce(loaded.get(l.name)!);
    reference ??= res.tokens;
    if (res.tokens.join(',') !== reference.join(',')) throw new Error(`${l.name} generated different tokens than the first run`);
    runs.get(l.name)!.push(res);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const base = runs.get(layouts[0]!.name)!;
console.log(`\nmedians of ${reps} alternating runs (ratio: median of per-repetition ratios to 1 span); all runs generated identical tokens`);
console.log('layout     prefill tok/s  ratio | decode tok/s  ratio | prefill tok/cpu-s  ratio | decode tok/cpu-s  ratio');
for (const l of layouts) {
  const rs = runs.get(l.name)!;
  const cells = METRICS.map((m) => {
    const value = median(rs.map((x) => x[m]));
    const ratio = median(rs.map((x, i) => x[m] / base[i]![m]));
    return `${value.toFixed(m.startsWith('prefill') ? 1 : 2).padStart(m.endsWith('Cpu') ? 17 : 13)} ${ratio.toFixed(3).padStart(6)}`;
  });
  console.log(`${l.name.padEnd(9)} ${cells.join(' |')}`);
}

// Interleaved decode: every layout advances one token in turn (rotating who goes first), so
// all of them see the same machine load; this pairs the comparison step by step.
{
  const states = layouts.map((l) => ({ name: l.name, sessions: loaded.get(l.name)!.map((s) => s.openSession()), token: 0, wall: 0, cpu: 0, tokens: [] as number[] }));
  for (const st of states) st.token = argmax((await forwardChain(st.sessions, prompt)).logits);
  for (let i = 0; i < decodeLen * reps; i++) {
    for (let j = 0; j < states.length; j++) {
      const st = states[(i + j) % states.length]!;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const out = await forwardChain(st.sessions, Int32Array.of(st.token));
      st.wall += performance.now() - t0;
      st.cpu += cpuSeconds(process.cpuUsage(c0));
      st.token = argmax(out.logits);
      st.tokens.push(st.token);
    }
  }
  const b = states[0]!;
  console.log(`\ninterleaved decode, ${decodeLen * reps} tokens per layout after a ${promptLen}-token prompt`);
  console.log('layout     decode tok/s  ratio | decode tok/cpu-s  ratio');
  for (const st of states) {
    if (st.tokens.join(',') !== b.tokens.join(',')) throw new Error(`${st.name} decoded different tokens`);
    const n = st.tokens.length;
    console.log(
      `${st.name.padEnd(9)} ${((n * 1000) / st.wall).toFixed(2).padStart(13)} ${(b.wall / st.wall).toFixed(3).padStart(6)} | ${(n / st.cpu).toFixed(2).padStart(16)} ${(b.cpu / st.cpu).toFixed(3).padStart(6)}`,
    );
  }
  for (const st of states) for (const s of st.sessions) s.dispose();
}

for (const spans of loaded.values()) for (const s of spans) await s.close();
