/**
 * `pool-agent bench`: this host's decode tokens/s for its span (as Petals measures at start),
 * stored in the state folder and sent at registration.
 */
import { resolve } from 'node:path';
import { loadState, mergeSettings, loadRawConfig, resolveStateDir, saveState } from '../config.js';
import { weightFormat } from '../../protocol/manifest.js';
import { loadManifest } from '../model/build.js';
import { createProgressBar } from '../model/progress.js';
import { availableMemoryBytes, loadMemoryWarning } from '../runtime/load-memory.js';
import { toFloat16Array } from '../model/weights.js';
import { loadAgentSpan } from '../runtime/local-pipeline.js';
import type { LoadedSpan, SpanInput } from '../runtime/types.js';
import { resolveProvider } from './provider.js';
import { CliError, NO_MODEL, parseFlags, parseLayers, parseNumber, spanFileBytes, str, type CliIo } from './args.js';

export const BENCH_USAGE = `Usage: pool-agent bench [--dir DIR] [--model DIR] [--layers A:B] [--threads N] [--tokens N] [--devices cuda:0,cuda:1]

Measures decode tokens/s of this host's span (prefill 16 positions, then N single-position
steps, default 32) and stores it in the state folder for \`pool-agent register\`. --model: default
modelDir in pool-agent.json (model build and model import record it). --layers: default the whole
model; a warning comes first when loading would likely need more memory than this host has
available: then bench (and register) a smaller contiguous range, another owner serves the rest.`;

/** Decode steps per second of one span session (hidden inputs are synthetic when the span is not the first). */
export async function measureDecode(span: LoadedSpan, opts: { prefill?: number; tokens?: number } = {}): Promise<number> {
  const prefill = opts.prefill ?? 16;
  const tokens = opts.tokens ?? 32;
  const arch = span.manifest.architecture;
  const input = (n: number, offset: number): SpanInput => {
    if (span.first) return { kind: 'tokens', ids: Int32Array.from({ length: n }, (_, i) => 3 + ((offset + i) * 7919) % (arch.vocabSize - 3)) };
    const data = Float32Array.from({ length: n * arch.hiddenSize }, (_, i) => Math.sin((offset * arch.hiddenSize + i) * 0.37));
    return { kind: 'hidden', data: span.manifest.dtype === 'float16' ? toFloat16Array(data) : data, seqLen: n };
  };
  const session = span.openSession();
  try {
    await session.forward(input(prefill, 0));
    await session.forward(input(1, prefill)); // warm-up
    const t0 = performance.now();
    for (let i = 0; i < tokens; i++) await session.forward(input(1, prefill + 1 + i));
    return tokens / ((performance.now() - t0) / 1000);
  } finally {
    session.dispose();
  }
}

export async function runBench(argv: string[], io: CliIo): Promise<number> {
  const { values, help } = parseFlags(
    argv,
    { dir: { type: 'string' }, model: { type: 'string' }, layers: { type: 'string' }, threads: { type: 'string' }, tokens: { type: 'string' }, devices: { type: 'string' } },
    BENCH_USAGE,
  );
  if (help) return io.out(BENCH_USAGE), 0;
  const dir = resolveStateDir(str(values.dir), io.env);
  const config = mergeSettings(await loadRawConfig(dir), {
    modelDir: str(values.model),
    layers: parseLayers(str(values.layers)),
    threads: parseNumber('threads', str(values.threads), { int: true, min: 0 }),
    devices: str(values.devices)?.split(',').map((d) => d.trim()),
  });
  if (!config.modelDir) throw new CliError(NO_MODEL);
  const modelDir = resolve(config.modelDir);
  const manifest = await loadManifest(modelDir);
  const layers = config.layers ?? [0, manifest.architecture.numLayers];
  const tokens = parseNumber('tokens', str(values.tokens), { int: true, min: 1, max: 10_000 }) ?? 32;
  const memoryWarning = loadMemoryWarning(spanFileBytes(manifest, layers), availableMemoryBytes(), weightFormat(manifest));
  if (memoryWarning) io.err(`warning: ${memoryWarning}`);
  const note = { info: (msg: string, f?: Record<string, unknown>) => io.err(`note: ${msg}${f?.reason ? ` (${String(f.reason)}: ${String(f.detail)})` : ''}`) };
  const settings = { ...config, provider: await resolveProvider(config, note) };
  const bar = createProgressBar(`loading layers ${layers[0]}:${layers[1]}`);
  const span = await loadAgentSpan(modelDir, layers, settings, (p) =>
    bar.update(p.filesDone, p.files, p.stage === 'file' ? p.file! : `onnxruntime session ${p.session}/${p.sessions}`),
  ).catch((err: unknown) => {
    // A span that cannot be cut over the listed devices is the owner's settings, not a crash.
    throw err instanceof RangeError ? new CliError(err.message) : err;
  });
  bar.finish();
  try {
    const tokensPerS = await measureDecode(span, { tokens });
    const state = await loadState(dir);
    const entry = { modelId: span.modelId, layers: [layers[0], layers[1]] as [number, number], tokensPerS, ...(config.threads ? { threads: config.threads } : {}), at: Date.now() };
    state.bench = [...state.bench.filter((b) => !(b.modelId === entry.modelId && b.layers[0] === layers[0] && b.layers[1] === layers[1])), entry].slice(-32);
    await saveState(dir, state);
    io.out(JSON.stringify({ ...entry, provider: span.provider, tokensPerS: Math.round(tokensPerS * 10) / 10 }));
  } finally {
    await span.close();
  }
  return 0;
}
