/**
 * `pool-agent model import`'s cost, each import in a fresh process (peak RSS is the kernel's
 * high-water mark, VmHWM, minus the process's RSS before the import):
 *
 *   --part scaling  two synthetic bf16 checkpoints of the same width, one with 4x the layers:
 *                   the import streams block by block, so the peaks should match (ratio ~1.0)
 *                   while the time grows with the layers
 *   --part speed    decode of an imported checkpoint with the `small` preset's shape against the
 *                   built `small` preset, interleaved token by token in one process (ratio ~1.0)
 *   --part 1b       a synthetic checkpoint with Llama-3.2-1B's shapes (bf16, 2.47 GB): import
 *                   time and peak RSS, float32 and float16
 *
 *   npm run bench:import -- [--part scaling,speed] [--tokens 64] [--keep DIR]
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildModel, PRESETS } from '../pool-agent/model/build.js';
import { importModel } from '../pool-agent/model/import/import.js';
import { argmax, forwardChain, loadSpan } from '../pool-agent/runtime/index.js';
import { LLAMA_3_2_1B, writeSyntheticCheckpoint, type SyntheticShape } from './synthetic-checkpoint.js';

const { values } = parseArgs({
  options: {
    part: { type: 'string', default: 'scaling,speed' },
    tokens: { type: 'string', default: '64' },
    keep: { type: 'string' },
    /** Internal: import once in this process and print the figures. */
    child: { type: 'string' },
    out: { type: 'string' },
    dtype: { type: 'string', default: 'float32' },
  },
});
const MiB = 1 << 20;
const peakRss = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;

if (values.child) {
  const before = process.memoryUsage().rss;
  const t = performance.now();
  await importModel({ dir: values.child, outDir: values.out!, dtype: values.dtype as 'float32' | 'float16', force: true });
  process.stdout.write(JSON.stringify({ ms: performance.now() - t, peak: peakRss() - before }));
  process.exit(0);
}

if (process.platform !== 'linux') throw new Error('bench:import reads peak RSS from /proc (Linux only)');
const work = values.keep ?? (await mkdtemp(join(tmpdir(), 'layernet-bench-import-')));
const parts = new Set(values.part!.split(','));

function importInChild(ckpt: string, out: string, dtype = 'float32'): { ms: number; peak: number } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--child', ckpt, '--out', out, '--dtype', dtype], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`import of ${ckpt} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { ms: number; peak: number };
}

const dirBytes = async (dir: string, files: string[]) => (await Promise.all(files.map((f) => stat(join(dir, f)).then((s) => s.size)))).reduce((a, b) => a + b, 0);

try {
  if (parts.has('scaling')) {
    const width: Omit<SyntheticShape, 'layers'> = { vocab: 8192, hidden: 2048, intermediate: 8192, heads: 32, kvHeads: 8, headDim: 64, tie: false };
    const rows: { layers: number; ckptBytes: number; ms: number; peak: number }[] = [];
    for (const layers of [4, 16]) {
      const ckpt = join(work, `scaling-${layers}`);
      const ckptBytes = await writeSyntheticCheckpoint(ckpt, { ...width, layers });
      // Twice each, alternating would need both on disk at once: they are, so take the lower peak of two.
      const a = importInChild(ckpt, join(work, `scaling-${layers}-out`));
      const b = importInChild(ckpt, join(work, `scaling-${layers}-out`));
      rows.push({ layers, ckptBytes, ms: Math.min(a.ms, b.ms), peak: Math.min(a.peak, b.peak) });
    }
    console.log(`\nimport peak RSS, same width (hidden ${width.hidden}, intermediate ${width.intermediate}, vocab ${width.vocab}), bf16 -> float32, lower of 2 runs each`);
    console.log('layers  checkpoint MiB  import s  peak RSS MiB');
    for (const r of rows) console.log(`${String(r.layers).padStart(6)}  ${(r.ckptBytes / MiB).toFixed(0).padStart(14)}  ${(r.ms / 1000).toFixed(1).padStart(8)}  ${(r.peak / MiB).toFixed(0).padStart(12)}`);
    console.log(`peak ratio (${rows[1]!.layers} layers / ${rows[0]!.layers} layers): ${(rows[1]!.peak / rows[0]!.peak).toFixed(3)}; checkpoint ratio ${(rows[1]!.ckptBytes / rows[0]!.ckptBytes).toFixed(2)}`);
  }

  if (parts.has('speed')) {
    const p = PRESETS.small;
    const shape: SyntheticShape = { vocab: p.vocabSize, hidden: p.hiddenSize, intermediate: p.intermediateSize, layers: p.numLayers, heads: p.numAttentionHeads, kvHeads: p.numKeyValueHeads, headDim: p.headDim, tie: false };
    const ckpt = join(work, 'small-shape');
    await writeSyntheticCheckpoint(ckpt, shape);
    const imported = await importModel({ dir: ckpt, outDir: join(work, 'small-shape-out') });
    const built = await buildModel({ preset: 'small', outDir: '.models/small' });
    const L = p.numLayers;
    const spans = {
      built: await loadSpan(built.dir, [0, L], { provider: 'cpu', intraOpThreads: 1 }),
      imported: await loadSpan(imported.dir, [0, L], { provider: 'cpu', intraOpThreads: 1 }),
    };
    const tokens = Number(values.tokens);
    const prompt = Int32Array.from({ length: 32 }, (_, i) => 1 + ((i * 7919) % 31999));
    const states = Object.entries(spans).map(([name, span]) => ({ name, session: span.openSession(), token: 0, ms: 0 }));
    for (const st of states) st.token = argmax((await forwardChain([st.session], prompt)).logits);
    // Warm-up steps, then token by token, alternating who goes first.
    for (let i = 0; i < tokens + 8; i++) {
      for (let j = 0; j < states.length; j++) {
        const st = states[(i + j) % states.length]!;
        const t = performance.now();
        st.token = argmax((await forwardChain([st.session], Int32Array.of(st.token))).logits);
        if (i >= 8) st.ms += performance.now() - t;
      }
    }
    console.log(`\ndecode, one span of the whole model, 1 thread, ${tokens} tokens each after a 32-token prompt, interleaved token by token`);
    for (const st of states) console.log(`${st.name.padEnd(9)} ${((tokens * 1000) / st.ms).toFixed(2).padStart(8)} tok/s`);
    console.log(`imported / built decode speed: ${(states[0]!.ms / states[1]!.ms).toFixed(3)}`);
    for (const s of Object.values(spans)) await s.close();
  }

  if (parts.has('1b')) {
    const ckpt = join(work, 'llama-3.2-1b-shape');
    const t = performance.now();
    const bytes = await writeSyntheticCheckpoint(ckpt, LLAMA_3_2_1B, { tokenizer: 'llama3' });
    console.log(`\nsynthetic Llama-3.2-1B-shaped checkpoint: ${(bytes / 2 ** 30).toFixed(2)} GiB bf16, written in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    for (const dtype of ['float32', 'float16']) {
      const out = join(work, `llama-3.2-1b-shape-${dtype}`);
      const r = importInChild(ckpt, out, dtype);
      const files = ['embed.onnx', 'head.onnx', ...Array.from({ length: LLAMA_3_2_1B.layers }, (_, i) => `layers.${i}.onnx`)];
      console.log(`import to ${dtype}: ${(r.ms / 1000).toFixed(1)} s, peak RSS ${(r.peak / MiB).toFixed(0)} MiB, ONNX files ${((await dirBytes(out, files)) / 2 ** 30).toFixed(2)} GiB`);
      await rm(out, { recursive: true, force: true });
    }
  }
} finally {
  if (!values.keep) await rm(work, { recursive: true, force: true });
}
