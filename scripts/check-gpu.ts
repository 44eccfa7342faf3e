/**
 * `npm run check:gpu`: does this host serve correctly and how fast on CUDA, against the CPU.
 *
 *   npm run check:gpu -- [--presets small,1b] [--formats fp16,int4] [--tokens 32] [--prompt 16]
 *       [--decode 32] [--cpu-decode 8] [--budget 480] [--models DIR] [--provider-from SOURCE]
 *       [--no-install] [--cpu-only] [--json FILE]
 *
 * 1. CUDA: probes it (pool-agent/runtime/cuda.ts); on a host with an NVIDIA GPU whose provider
 *    libraries are missing, installs them first (scripts/cuda-install.ts; --provider-from, else
 *    $LAYERNET_CUDA_PROVIDER, else onnxruntime-node's own download) and probes again.
 * 2. For each preset and format (int4 only where `pool-agent model build` takes --quant): builds
 *    it, loads the whole model on CUDA and on the CPU, generates greedily on each, judges each
 *    generation on the other provider with the network's checker (TOPLOC commitments within the
 *    dtype's tolerances, every token the greedy pick or a near tie), and measures decode tok/s at
 *    batch 1 and 16 (16 sessions on one span: the agent has no batched step yet).
 * 3. Without CUDA (or --cpu-only): the same on the CPU for the `tiny` preset, served with one
 *    thread and judged with the default thread count, and it says why CUDA was not used.
 *
 * Every phase prints its time; a model variant that would end past --budget seconds (judged by
 * the preset's previous variant) is skipped and said so. On the CPU, batch 16 runs a quarter of
 * --cpu-decode rounds. Exit 0 when every check passed; 1 when one failed, or when the host has an NVIDIA GPU
 * but CUDA is not usable (unless --cpu-only); 2 on a usage error.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { detectHardware } from '../pool-agent/hardware.js';
import { ortPackage, probeCuda, type ProviderStatus } from '../pool-agent/runtime/cuda.js';
import { loadSpan } from '../pool-agent/runtime/span.js';
import type { LoadedSpan } from '../pool-agent/runtime/types.js';
import { buildVariant, decodeRate, firstDifference, judgeOn, promptIds, quantFlagSupported, serveGreedy, type Format, type Rate } from './check-gpu-lib.js';
import { installProvider, parseSource } from './cuda-install.js';

const optionsSchema = z.object({
  presets: z.array(z.enum(['tiny', 'small', '1b'])).min(1),
  formats: z.array(z.enum(['fp32', 'fp16', 'int4'])).min(1),
  tokens: z.number().int().min(2).max(512),
  prompt: z.number().int().min(1).max(1024),
  decode: z.number().int().min(1).max(1024),
  cpuDecode: z.number().int().min(1).max(1024),
  budget: z.number().positive(),
  models: z.string().min(1),
  providerFrom: z.string().min(1).optional(),
  install: z.boolean(),
  cpuOnly: z.boolean(),
  json: z.string().min(1).optional(),
});
export type CheckGpuOptions = z.infer<typeof optionsSchema>;

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): CheckGpuOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      presets: { type: 'string' }, formats: { type: 'string' }, tokens: { type: 'string', default: '32' }, prompt: { type: 'string', default: '16' },
      decode: { type: 'string', default: '32' }, 'cpu-decode': { type: 'string', default: '8' }, budget: { type: 'string', default: '480' },
      models: { type: 'string', default: '.models/check-gpu' }, 'provider-from': { type: 'string' }, 'no-install': { type: 'boolean' },
      'cpu-only': { type: 'boolean' }, json: { type: 'string' },
    },
  });
  const list = (s: string | undefined) => s?.split(',').map((x) => x.trim()).filter(Boolean);
  return optionsSchema.parse({
    presets: list(values.presets) ?? ['small', '1b'],
    formats: list(values.formats) ?? ['fp16', 'int4'],
    tokens: Number(values.tokens), prompt: Number(values.prompt), decode: Number(values.decode), cpuDecode: Number(values['cpu-decode']),
    budget: Number(values.budget), models: values.models, providerFrom: values['provider-from'] ?? env.LAYERNET_CUDA_PROVIDER,
    install: !values['no-install'], cpuOnly: values['cpu-only'] === true, json: values.json,
  });
}

/** What runs: CUDA against the CPU, or the CPU half alone on `tiny` (and whether that is a failure). */
export function decideMode(cuda: ProviderStatus | undefined, gpus: number, cpuOnly: boolean): { mode: 'cuda' | 'cpu'; note: string; failed: boolean } {
  if (cpuOnly) return { mode: 'cpu', note: 'CUDA not used (--cpu-only): running the CPU half on the tiny preset', failed: false };
  if (cuda?.usable) return { mode: 'cuda', note: `CUDA usable: ${cuda.detail}`, failed: false };
  const why = cuda && !cuda.usable ? `${cuda.reason}: ${cuda.detail}` : 'not probed';
  if (gpus > 0) return { mode: 'cpu', note: `CUDA not found usable on a host with ${gpus} NVIDIA GPU(s) (${why}): running the CPU half on the tiny preset; this is a failure`, failed: true };
  return { mode: 'cpu', note: `CUDA not found (${why}): running the CPU half on the tiny preset`, failed: false };
}

interface Side {
  provider: string;
  loadMs: number;
  rates: Rate[];
}

export interface VariantResult {
  preset: string;
  format: Format;
  status: 'pass' | 'fail' | 'skipped' | 'error';
  detail: string;
  buildMs?: number;
  modelId?: string;
  tokensIdentical?: boolean;
  firstDifference?: number;
  checks?: { served: string; checker: string; status: string; detail: string; worstMantissaErrMean?: number; worstIndexOverlap?: number }[];
  sides?: Side[];
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export async function checkGpu(opts: CheckGpuOptions, out: (l: string) => void = console.log): Promise<{ code: number; results: VariantResult[] }> {
  const t0 = performance.now();
  const elapsed = () => performance.now() - t0;
  const say = (l: string) => out(`[${secs(elapsed()).padStart(7)}] ${l}`);
  say(`onnxruntime-node ${ortPackage().version}, node ${process.version}, ${cpus().length} CPU threads; budget ${opts.budget} s`);
  const hw = await detectHardware();
  const gpus = hw.devices.filter((d) => d.kind === 'cuda');
  for (const g of gpus) say(`GPU ${g.name}`);
  let cuda: ProviderStatus | undefined;
  if (!opts.cpuOnly) {
    cuda = await probeCuda();
    if (!cuda.usable && cuda.reason === 'library_missing' && gpus.length > 0 && opts.install) {
      const source = parseSource(opts.providerFrom ?? 'nuget');
      say(`CUDA provider libraries missing: installing them (${opts.providerFrom ?? 'nuget: onnxruntime-node\'s own download'})`);
      try {
        await installProvider(source, { log: (l) => say(`  ${l}`) });
      } catch (err) {
        say(`install failed: ${(err as Error).message}`);
      }
      cuda = await probeCuda();
    }
  }
  const mode = decideMode(cuda, gpus.length, opts.cpuOnly);
  say(mode.note);
  const presets = mode.mode === 'cuda' ? opts.presets : ['tiny' as const];
  const int4 = quantFlagSupported();
  if (opts.formats.includes('int4') && !int4) say('int4 skipped: `pool-agent model build` takes no --quant int4 in this tree yet');
  const formats = opts.formats.filter((f) => f !== 'int4' || int4);
  await mkdir(opts.models, { recursive: true });
  const results: VariantResult[] = [];
  for (const preset of presets) {
    // The preset's last variant's time predicts the next one's (their builds and runs are alike).
    let lastMs = 0;
    for (const format of formats) {
      if (elapsed() + lastMs > opts.budget * 1000) {
        say(`${preset} ${format}: skipped: it would end past the ${opts.budget} s budget (the last ${preset} took ${secs(lastMs)})`);
        results.push({ preset, format, status: 'skipped', detail: 'budget' });
        continue;
      }
      const t = performance.now();
      results.push(await runVariant(preset, format, mode.mode, opts, say));
      lastMs = performance.now() - t;
    }
  }
  say('batch 16 = 16 sessions decoding together on one span. The agent has no batched step yet: each session runs its own onnxruntime run, and onnxruntime-node runs a run on the JS thread, so runs do not overlap (expect about the batch-1 rate).');
  out('');
  out('model        format provider  load s  b1 tok/s  b16 tok/s  tokens          check (served on -> judged on)');
  for (const r of results) {
    if (!r.sides) {
      out(`${r.preset.padEnd(12)} ${r.format.padEnd(6)} ${r.status}: ${r.detail}`);
      continue;
    }
    for (const [i, s] of r.sides.entries()) {
      const rate = (b: number) => s.rates.find((x) => x.batch === b)?.tokPerS.toFixed(1) ?? '-';
      const tokens = i > 0 ? '' : r.tokensIdentical ? 'identical' : `differ at ${r.firstDifference}`;
      const c = r.checks?.[i];
      out(`${r.preset.padEnd(12)} ${r.format.padEnd(6)} ${s.provider.padEnd(9)} ${(s.loadMs / 1000).toFixed(1).padStart(6)} ${rate(1).padStart(9)} ${rate(16).padStart(10)}  ${tokens.padEnd(15)} ${c ? `${c.served} -> ${c.checker}: ${c.status} (${c.detail})` : ''}`);
    }
  }
  const failed = results.some((r) => r.status === 'fail' || r.status === 'error') || mode.failed;
  say(`${failed ? 'FAILED' : 'passed'} in ${secs(elapsed())}`);
  if (opts.json) await writeFile(opts.json, JSON.stringify({ at: new Date().toISOString(), mode: mode.mode, note: mode.note, gpus: gpus.map((g) => g.name), results }, null, 2) + '\n');
  return { code: failed ? 1 : 0, results };
}

async function runVariant(preset: string, format: Format, mode: 'cuda' | 'cpu', opts: CheckGpuOptions, say: (l: string) => void): Promise<VariantResult> {
  const name = `${preset} ${format}`;
  let built;
  try {
    built = await buildVariant(preset, format, resolve(opts.models));
  } catch (err) {
    say(`${name}: build failed: ${(err as Error).message}`);
    return { preset, format, status: 'error', detail: `build: ${(err as Error).message}` };
  }
  say(`${name}: built ${built.name} (${built.modelId.slice(0, 12)}) in ${secs(built.ms)}`);
  // A: the side that serves first; B: the other. CPU-only: one thread against the default count.
  const layers = [0, built.numLayers] as const;
  const specs = mode === 'cuda' ? [{ label: 'cuda', provider: 'cuda' as const }, { label: 'cpu', provider: 'cpu' as const }] : [{ label: 'cpu/1t', provider: 'cpu' as const, threads: 1 }, { label: 'cpu', provider: 'cpu' as const }];
  const spans: LoadedSpan[] = [];
  const sides: Side[] = [];
  try {
    for (const s of specs) {
      const t = performance.now();
      spans.push(await loadSpan(built.dir, layers, { provider: s.provider, ...('threads' in s ? { intraOpThreads: s.threads } : {}) }));
      sides.push({ provider: s.label, loadMs: performance.now() - t, rates: [] });
      say(`${name}: loaded on ${s.label} in ${secs(sides.at(-1)!.loadMs)}`);
    }
    const prompt = promptIds(opts.prompt, spans[0]!.manifest.architecture.vocabSize);
    const served = [];
    for (const [i, span] of spans.entries()) {
      await serveGreedy(span, prompt, 2); // warm-up
      served.push(await serveGreedy(span, prompt, opts.tokens));
      say(`${name}: ${opts.tokens} greedy tokens on ${sides[i]!.provider}: prefill ${served[i]!.prefillMs.toFixed(0)} ms, decode ${served[i]!.decodeMs.toFixed(0)} ms`);
    }
    const diff = firstDifference(served[0]!.tokens, served[1]!.tokens);
    const checks: NonNullable<VariantResult['checks']> = [];
    for (const [a, b] of [[0, 1], [1, 0]] as const) {
      const t = performance.now();
      const v = await judgeOn(spans[b]!, spans[a]!, prompt, served[a]!);
      const h = v.evidence.hidden;
      checks.push({ served: sides[a]!.provider, checker: sides[b]!.provider, status: v.status, detail: v.detail, worstMantissaErrMean: h?.mantissaErrMean, worstIndexOverlap: h?.indexOverlap });
      say(`${name}: served on ${sides[a]!.provider}, judged on ${sides[b]!.provider}: ${v.status} (${v.detail}${h ? `; worst row mantissa err ${h.mantissaErrMean.toFixed(2)}, index overlap ${h.indexOverlap.toFixed(2)}` : ''}) in ${secs(performance.now() - t)}`);
    }
    for (const [i, span] of spans.entries()) {
      for (const batch of [1, 16]) {
        // The CPU's batch 16 takes a quarter of the rounds: 16 steps a round on a CPU is slow for 1b.
        const steps = specs[i]!.provider === 'cuda' ? opts.decode : batch === 1 ? opts.cpuDecode : Math.max(1, Math.ceil(opts.cpuDecode / 4));
        const r = await decodeRate(span, batch, steps, opts.prompt);
        sides[i]!.rates.push(r);
        say(`${name}: ${sides[i]!.provider} batch ${batch}: ${r.tokPerS.toFixed(1)} tok/s (${steps} steps)`);
      }
    }
    const ok = checks.every((c) => c.status === 'pass');
    return {
      preset, format, status: ok ? 'pass' : 'fail', modelId: built.modelId, buildMs: built.ms, sides, checks, tokensIdentical: diff < 0, ...(diff >= 0 ? { firstDifference: diff } : {}),
      detail: ok ? `both generations pass the checker${diff < 0 ? ', identical tokens' : `, tokens first differ at step ${diff} (a near tie the checker allows)`}` : checks.filter((c) => c.status !== 'pass').map((c) => `${c.served} -> ${c.checker}: ${c.detail}`).join('; '),
    };
  } catch (err) {
    say(`${name}: ${(err as Error).message}`);
    return { preset, format, status: 'error', detail: (err as Error).message, modelId: built.modelId, buildMs: built.ms, sides };
  } finally {
    await Promise.all(spans.map((s) => s.close()));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let opts: CheckGpuOptions;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`check:gpu: ${err instanceof z.ZodError ? err.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('; ') : (err as Error).message}`);
    process.exit(2);
  }
  process.exitCode = (await checkGpu(opts)).code;
}
