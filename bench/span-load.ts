/**
 * Memory and time to load a span: `loadSpan` (files read one at a time through one scratch buffer
 * into the merged model) against reading every file first and merging them (`mergeOnnxModels`,
 * how spans were loaded before), each in a fresh process, alternating. Peak RSS is the kernel's
 * high-water mark (`VmHWM`), so it counts onnxruntime's own copies as well.
 *
 *   npm run bench:load -- [--model .models/small] [--layers 0:8] [--rounds 3]
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { filesForSpan } from '../protocol/manifest.js';
import { loadManifest } from '../pool-agent/model/build.js';
import { mergeOnnxModels } from '../pool-agent/runtime/merge.js';
import { loadSpan } from '../pool-agent/runtime/span.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: '.models/small' },
    layers: { type: 'string', default: '0:8' },
    rounds: { type: 'string', default: '3' },
    /** Internal: load once this way and print the figures. */
    mode: { type: 'string' },
  },
});
const MODEL = resolve(values.model!);
const [start, end] = values.layers!.split(':').map(Number) as [number, number];
const MiB = 1 << 20;
const peakRss = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;

if (values.mode) {
  const before = process.memoryUsage().rss;
  const t = performance.now();
  if (values.mode === 'loadSpan') {
    await loadSpan(MODEL, [start, end], { provider: 'cpu', intraOpThreads: 1 });
  } else {
    const manifest = await loadManifest(MODEL);
    const parts = await Promise.all(filesForSpan(manifest, { start, end }).map(async (f) => new Uint8Array(await readFile(join(MODEL, f.path)))));
    await ort.InferenceSession.create(mergeOnnxModels(parts), { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
  }
  process.stdout.write(JSON.stringify({ ms: performance.now() - t, peak: peakRss() - before }));
  process.exit(0);
}

if (process.platform !== 'linux') throw new Error('bench:load reads peak RSS from /proc (Linux only)');
const manifest = await loadManifest(MODEL);
const fileBytes = filesForSpan(manifest, { start, end }).reduce((n, f) => n + f.bytes, 0);
const run = (mode: string) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--model', MODEL, '--layers', values.layers!, '--mode', mode], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${mode} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { ms: number; peak: number };
};
const rows: Record<string, Record<string, number>> = {};
const ratios: number[] = [];
for (let round = 1; round <= Number(values.rounds); round++) {
  const a = run('readAll');
  const b = run('loadSpan');
  ratios.push(b.peak / a.peak);
  rows[`round ${round}`] = {
    'all files, then merge: peak MiB': Math.round(a.peak / MiB),
    'loadSpan: peak MiB': Math.round(b.peak / MiB),
    'peak ratio': +(b.peak / a.peak).toFixed(3),
    'all files: ms': Math.round(a.ms),
    'loadSpan: ms': Math.round(b.ms),
  };
}
console.log(`${manifest.name} layers ${start}:${end}, ${Math.round(fileBytes / MiB)} MiB of model files; peak RSS above the process's start`);
console.table(rows);
const median = [...ratios].sort((x, y) => x - y)[Math.floor(ratios.length / 2)]!;
console.log(JSON.stringify({ bench: 'span-load', model: manifest.name, layers: [start, end], fileBytes, peakRatio: median, rows }));
