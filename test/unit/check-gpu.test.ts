/**
 * `npm run check:gpu` without CUDA: its CPU half on the tiny preset runs end to end (a child
 * process, as npm runs it) and passes; the judge it uses is the network's checker, so it fails a
 * generation of another model and a tampered token; the mode it picks says why CUDA was not used.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildModel } from '../../pool-agent/model/build.js';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import type { LoadedSpan } from '../../pool-agent/runtime/types.js';
import { CHUNK_STEPS, judgeOn, promptIds, quantFlagSupported, serveGreedy } from '../../scripts/check-gpu-lib.js';
import { decideMode, parseOptions } from '../../scripts/check-gpu.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'layernet-check-gpu-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const resultSchema = z.object({
  mode: z.enum(['cuda', 'cpu']),
  note: z.string(),
  results: z.array(
    z.object({
      preset: z.string(),
      format: z.string(),
      status: z.string(),
      tokensIdentical: z.boolean().optional(),
      checks: z.array(z.object({ served: z.string(), checker: z.string(), status: z.string() })).optional(),
      sides: z.array(z.object({ provider: z.string(), rates: z.array(z.object({ batch: z.number(), steps: z.number(), tokPerS: z.number() })) })).optional(),
    }),
  ),
});

describe('check:gpu', () => {
  it('runs the CPU half on tiny, checks tokens and commitments both ways, prints tok/s at batch 1 and 16', async () => {
    const json = join(root, 'result.json');
    const args = ['--import', 'tsx', 'scripts/check-gpu.ts', '--cpu-only', '--formats', 'fp16', '--tokens', '20', '--decode', '4', '--cpu-decode', '4', '--models', join(root, 'models'), '--json', json];
    const { code, stdout } = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, args, { timeout: 120_000 }, (err, stdout) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout }));
    });
    expect(stdout).toMatch(/CUDA not used \(--cpu-only\): running the CPU half on the tiny preset/);
    expect(stdout).toMatch(/tiny fp16: served on cpu\/1t, judged on cpu: pass \(20 steps agree/);
    expect(stdout).toMatch(/no batched step yet/);
    expect(stdout).toMatch(/passed in/);
    expect(code).toBe(0);
    const r = resultSchema.parse(JSON.parse(await readFile(json, 'utf8')));
    expect(r.mode).toBe('cpu');
    expect(r.results).toHaveLength(1);
    const v = r.results[0]!;
    expect(v).toMatchObject({ preset: 'tiny', format: 'fp16', status: 'pass', tokensIdentical: true });
    expect(v.checks!.map((c) => `${c.served}->${c.checker}:${c.status}`)).toEqual(['cpu/1t->cpu:pass', 'cpu->cpu/1t:pass']);
    for (const side of v.sides!) {
      expect(side.rates.map((x) => x.batch)).toEqual([1, 16]);
      for (const rate of side.rates) expect(rate.tokPerS).toBeGreaterThan(0);
    }
  });

  describe('its judge is the checker', () => {
    let a: LoadedSpan;
    let b: LoadedSpan;
    beforeAll(async () => {
      await buildModel({ preset: 'tiny', dtype: 'float16', seed: 0, outDir: join(root, 'seed0') });
      await buildModel({ preset: 'tiny', dtype: 'float16', seed: 1, outDir: join(root, 'seed1') });
      a = await loadSpan(join(root, 'seed0'), [0, 4], { provider: 'cpu', intraOpThreads: 1 });
      b = await loadSpan(join(root, 'seed1'), [0, 4], { provider: 'cpu', intraOpThreads: 1 });
    });
    afterAll(async () => {
      await a.close();
      await b.close();
    });

    it('commits per chunk as a route does, passes an honest generation, fails another model and a changed token', async () => {
      const prompt = promptIds(8, a.manifest.architecture.vocabSize);
      const n = CHUNK_STEPS + 4;
      const served = await serveGreedy(a, prompt, n);
      expect(served.tokens).toHaveLength(n);
      expect(served.chunks.map((c) => c.steps)).toEqual([[0, 1], [1, 1 + CHUNK_STEPS], [1 + CHUNK_STEPS, n]]);
      expect((await judgeOn(a, a, prompt, served)).status).toBe('pass');
      const other = await judgeOn(b, a, prompt, served);
      expect(other).toMatchObject({ status: 'fail', reason: 'hidden_mismatch' });
      const change = (step: number) => {
        const tokens = [...served.tokens];
        tokens[step] = (tokens[step]! + 1) % a.manifest.architecture.vocabSize;
        return { ...served, tokens, chunks: served.chunks.map((c) => ({ ...c, tokenIds: tokens.slice(c.steps[0], c.steps[1]) })) };
      };
      // The last token is fed to nothing: only its sampling can give it away.
      expect(await judgeOn(a, a, prompt, change(n - 1))).toMatchObject({ status: 'fail', reason: 'sampling_mismatch', detail: expect.stringMatching(new RegExp(`^step ${n - 1}: returned token`)) });
      // An earlier one is the next step's input: the committed hidden row no longer follows.
      expect(await judgeOn(a, a, prompt, change(5))).toMatchObject({ status: 'fail', reason: 'hidden_mismatch', detail: expect.stringMatching(/^step 6: /) });
    });
  });

  it('says why CUDA was not used, and fails on a GPU host where CUDA does not run', () => {
    const missing = { name: 'cuda' as const, usable: false as const, reason: 'library_missing' as const, detail: 'not in /x' };
    expect(decideMode(missing, 0, false)).toEqual({ mode: 'cpu', note: 'CUDA not found (library_missing: not in /x): running the CPU half on the tiny preset', failed: false });
    expect(decideMode(missing, 1, false)).toMatchObject({ mode: 'cpu', failed: true, note: expect.stringMatching(/host with 1 NVIDIA GPU.*this is a failure/) });
    expect(decideMode({ name: 'cuda', usable: true, detail: 'ran' }, 1, false)).toMatchObject({ mode: 'cuda', failed: false });
    expect(decideMode({ name: 'cuda', usable: true, detail: 'ran' }, 1, true)).toMatchObject({ mode: 'cpu', failed: false });
  });

  it('parses its options and detects --quant int4', () => {
    expect(parseOptions([], {})).toMatchObject({ presets: ['small', '1b'], formats: ['fp16', 'int4'], tokens: 32, decode: 32, budget: 480, install: true, cpuOnly: false });
    expect(parseOptions(['--no-install', '--presets', 'small'], { LAYERNET_CUDA_PROVIDER: 'npm:x@1.30.0' })).toMatchObject({ presets: ['small'], install: false, providerFrom: 'npm:x@1.30.0' });
    expect(() => parseOptions(['--presets', '7b'], {})).toThrow();
    expect(() => parseOptions(['--tokens', '1'], {})).toThrow();
    expect(quantFlagSupported('Usage: pool-agent model build --preset tiny [--dtype float32|float16] [--seed N]')).toBe(false);
    expect(quantFlagSupported('Usage: pool-agent model build --preset tiny [--quant int8|int4 [--quant-block N]]')).toBe(true);
  });
});
