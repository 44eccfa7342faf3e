/**
 * TOPLOC commitments on the `small` preset (fp32, hidden 768, 8 layers): bytes per token, and how
 * long a re-execution check takes against the generation it verifies.
 *
 * Generation: prefill the prompt then decode N tokens one by one (KV cache), committing each
 * token's final hidden row (one chunk per token, as the agent server does). Check: one
 * teacher-forced prefill over prompt ++ generated with logitsToKeep = N, then the TOPLOC
 * comparison and the sampler replay for every step (protocol/check.ts judgeCheck).
 *
 *   node --import tsx bench/toploc.ts [--tokens 256] [--prompt 32] [--threads 2] [--reps 2] [--k 16] [--preset small] [--temperature 0.8 | 0 for greedy] [--kv-cache append|full]
 *
 * With `--separation tiny|small`: the figures of docs/trust.md §1 instead, i.e. per-row comparison
 * statistics of honest recomputation (1 vs 2 threads) against cheating nodes (fp16 served, other
 * seed, fewer layers, altered prompt), through the same simulated route as the integration tests.
 * Add `--format int8|int4` to measure a quantized model instead (`model build --quant`): honest
 * checks of it across thread counts, against nodes serving another format of the same weights.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { tokenCommitment, type SignedAttestation } from '../protocol/attestation.js';
import { encodeTokenIds, sha256Hex } from '../protocol/bytes.js';
import { checkTolerancesFor, judgeCheck, lastRows, planCheck } from '../protocol/check.js';
import { commitHidden, commitmentBytes } from '../protocol/commitment.js';
import type { JobTicket } from '../protocol/ticket.js';
import { buildModel, type PresetName } from '../pool-agent/model/index.js';
import { forwardChain, generate, loadSpan, sampleToken } from '../pool-agent/runtime/index.js';

const { values } = parseArgs({
  options: {
    tokens: { type: 'string', default: '256' },
    prompt: { type: 'string', default: '32' },
    threads: { type: 'string', default: '2' },
    reps: { type: 'string', default: '2' },
    k: { type: 'string', default: '16' },
    preset: { type: 'string', default: 'small' },
    separation: { type: 'string' },
    /** With --separation: the weight format of the ticketed model (float32, int8, int4). */
    format: { type: 'string', default: 'float32' },
    /** With --separation: tokens per job (default 32 on tiny, 16 on small). */
    'sep-tokens': { type: 'string' },
    temperature: { type: 'string', default: '0.8' },
    /** KV-cache layout of the model (protocol/manifest.ts): 'append' (the builder's default) or 'full'. */
    'kv-cache': { type: 'string', default: 'append' },
  },
});
if (values.separation) {
  await separation(values.separation as 'tiny' | 'small', values.format as 'float32' | 'int8' | 'int4');
  process.exit(0);
}
const N = Number(values.tokens);
const P = Number(values.prompt);
const threads = Number(values.threads);
const reps = Number(values.reps);
const k = Number(values.k);
const preset = values.preset as PresetName;

const kvCache = values['kv-cache'] === 'full' ? 'full' : 'append';
const { manifest, modelId, dir } = await buildModel({ preset, dtype: 'float32', seed: 0, kvCache, outDir: join('.models', kvCache === 'full' ? `${preset}-fullkv` : preset) });
const { hiddenSize: H, vocabSize: V, numLayers: L } = manifest.architecture;
const span = await loadSpan(dir, [0, L], { provider: 'cpu', intraOpThreads: threads });
const prompt = Array.from({ length: P }, (_, i) => 1 + ((i * 7919) % 31999));
const temperature = Number(values.temperature);
const sampling = temperature > 0 ? { temperature, topP: 0.95, topK: 40, seed: 1234 } : { temperature: 0, topP: 1, topK: 0, seed: 1234 };
console.log(`model ${preset} ${modelId.slice(0, 12)}… hidden ${H}, ${L} layers; prompt ${P}, generate ${N}, threads ${threads}, k ${k}, cpu; sampling ${JSON.stringify(sampling)}`);

const ticket: JobTicket = {
  v: 1,
  jobId: 'bench',
  modelId,
  dtype: 'float32',
  route: [{ agentId: 'bench-agent', layers: [0, L], endpoint: 'http://127.0.0.1:1/' }],
  inputHash: await sha256Hex(encodeTokenIds(prompt)),
  promptTokens: P,
  prefixTokens: 0,
  limits: { maxTokens: N, deadline: Date.now() + 3_600_000 },
  sampling,
  stopTokenIds: [],
  nonce: 'bench-nonce-000000001',
  issuedAt: Date.now(),
  expiresAt: Date.now() + 3_600_000,
  edgeKeyId: 'bench',
};

const results: { gen: number; commit: number; check: number; prefill: number; judge: number; pass: boolean }[] = [];
for (let r = 0; r < reps + 1; r++) {
  const session = span.openSession();
  const commitments: string[] = [];
  let commitMs = 0;
  const t0 = performance.now();
  const res = await generate({
    stages: [session],
    promptIds: prompt,
    sampling,
    maxTokens: N,
    onToken: (_t, _s, row) => {
      const c0 = performance.now();
      commitments.push(commitHidden(row, 1, H, { k }));
      commitMs += performance.now() - c0;
    },
  });
  const gen = performance.now() - t0;
  session.dispose();
  const chunks: SignedAttestation[][] = [];
  for (let j = 0; j < res.tokens.length; j++) {
    chunks.push([
      {
        att: {
          v: 1, ticketHash: 'a'.repeat(64), jobId: 'bench', agentId: 'bench-agent', modelId, hop: 0, layers: [0, L], steps: [j, j + 1],
          inputCommitment: 'a'.repeat(64), outputCommitment: await tokenCommitment([res.tokens[j]!]), outputTokenIds: [res.tokens[j]!],
          hiddenCommitment: commitments[j]!, prevHash: null, issuedAt: Date.now(),
        },
        sig: 'x',
      },
    ]);
  }
  const t1 = performance.now();
  const planned = await planCheck(ticket, prompt, chunks);
  if (!planned.ok) throw new Error(planned.verdict.detail);
  const plan = planned.plan;
  const check = span.openSession();
  const out = await forwardChain([check], Int32Array.from(plan.sequence), { logitsToKeep: plan.logitsToKeep });
  check.dispose();
  const t2 = performance.now();
  const verdict = judgeCheck({ plan, hidden: lastRows(out.finalHidden, out.seqLen, H, plan.logitsToKeep), logits: out.logits, hiddenSize: H, vocabSize: V, sample: sampleToken, tolerances: checkTolerancesFor('float32') });
  const t3 = performance.now();
  if (r === 0) continue; // warm-up
  results.push({ gen, commit: commitMs, check: t3 - t1, prefill: t2 - t1, judge: t3 - t2, pass: verdict.status === 'pass' });
  console.log(`rep ${r}: generate ${gen.toFixed(0)} ms (${(gen / N).toFixed(2)} ms/token), check ${(t3 - t1).toFixed(0)} ms (prefill ${(t2 - t1).toFixed(0)}, judge ${(t3 - t2).toFixed(0)}), ratio ${(gen / (t3 - t1)).toFixed(1)}x, verdict ${verdict.status}${verdict.status === 'pass' ? '' : ` ${verdict.reason} ${verdict.detail}`}`);
}
await span.close();

const med = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const gen = med(results.map((r) => r.gen));
const check = med(results.map((r) => r.check));
const oneToken = commitmentBytes(1, k);
const perChunk32 = commitmentBytes(32, k) / 32;
console.log('\nsummary (medians)');
console.table({
  'commitment bytes per token (1-token chunks)': { value: oneToken, note: `${Math.ceil((oneToken * 4) / 3)} base64url chars` },
  'commitment bytes per token (32-token chunks)': { value: +perChunk32.toFixed(1), note: `${Math.ceil((commitmentBytes(32, k) * 4) / 3)} chars per chunk` },
  'commit time per token (ms)': { value: +(med(results.map((r) => r.commit)) / N).toFixed(4), note: 'agent, k-largest of one row' },
  [`generation of ${N} tokens (ms)`]: { value: +gen.toFixed(0), note: `${(gen / N).toFixed(2)} ms/token` },
  'check: prefill + judge (ms)': { value: +check.toFixed(0), note: `judge ${med(results.map((r) => r.judge)).toFixed(0)} ms` },
  'check speed-up over generation': { value: +(gen / check).toFixed(1), note: `target >= 10x; per rep: ${results.map((r) => (r.gen / r.check).toFixed(1)).join(', ')}` },
  'honest checks passed': { value: results.filter((r) => r.pass).length, note: `of ${results.length}` },
});

/** Per-row comparison statistics, honest vs cheating (docs/trust.md §1). */
async function separation(which: 'tiny' | 'small', format: 'float32' | 'int8' | 'int4'): Promise<void> {
  const { serveJob, testModel } = await import('../test/integration/verify-fixtures.js');
  const { runCheck } = await import('../pool-agent/verify/checker.js');
  const { compareHidden } = await import('../protocol/commitment.js');
  const seed = which === 'tiny' ? 1 : 0;
  const quantized = (f: 'int8' | 'int4') => testModel(`${which}-s${seed}-fp32-${f}`, { preset: which, dtype: 'float32', seed, quant: { format: f } });
  // The fp32 reference is the benchmark model itself for `small` (.models/small), a test model for `tiny`.
  const fp32 = which === 'small' ? await buildModel({ preset: 'small', dtype: 'float32', seed: 0, outDir: join('.models', 'small') }) : await testModel('tiny-s1-fp32', { preset: 'tiny', dtype: 'float32', seed: 1 });
  const ref = format === 'float32' ? fp32 : await quantized(format);
  const cases: Record<string, { dir: string; cheat?: import('../test/integration/verify-fixtures.js').Cheat }> = { honest: { dir: ref.dir } };
  // Cheaper formats of the same weights served for the ticketed one.
  if (format === 'float32') cases['fp16 served'] = { dir: (await testModel(`${which}-s${seed}-fp16`, { preset: which, dtype: 'float16', seed })).dir };
  if (format !== 'int8') cases['int8 served'] = { dir: (await quantized('int8')).dir };
  if (format !== 'int4') cases['int4 served'] = { dir: (await quantized('int4')).dir };
  if (format !== 'float32') cases['fp32 served'] = { dir: fp32.dir };
  if (which === 'tiny' && format === 'float32') {
    cases['other seed'] = { dir: (await testModel('tiny-s2-fp32', { preset: 'tiny', dtype: 'float32', seed: 2 })).dir };
    cases['2 of 4 layers'] = { dir: (await testModel('tiny-s1-fp32-2layers', { preset: 'tiny', dtype: 'float32', seed: 1, overrides: { numLayers: 2 } })).dir };
    cases['prompt altered'] = { dir: ref.dir, cheat: { kind: 'alter-prompt', drop: 1 } };
  }
  const prompts = [
    [1, 15043, 29892, 920, 526, 366, 29973],
    [1, 518, 25580, 29962, 14350, 263, 26576, 1048, 278, 7205, 29889],
    [1, 450, 4996, 17354, 1701, 29916, 432, 17204],
  ];
  const samplings = [
    { temperature: 0, topP: 1, topK: 0, seed: 1 },
    { temperature: 0.8, topP: 0.95, topK: 40, seed: 7 },
  ];
  const arch = (await import('../pool-agent/model/index.js')).PRESETS[which];
  const tokens = values['sep-tokens'] ? Number(values['sep-tokens']) : which === 'tiny' ? 32 : 16;
  const checker = await loadSpan(ref.dir, [0, arch.numLayers], { provider: 'cpu', intraOpThreads: 2 });
  const open = { minIndexOverlap: 0, maxExpMismatch: 1, maxMantissaErrMean: Infinity, maxMantissaErrMedian: Infinity };
  const table: Record<string, Record<string, string | number>> = {};
  for (const [name, c] of Object.entries(cases)) {
    const rows: { mean: number; median: number; overlap: number; exp: number }[] = [];
    const verdicts: Record<string, number> = {};
    for (const promptIds of prompts) {
      for (const sampling of samplings) {
        const job = await serveJob({ ticketModelDir: ref.dir, hops: [{ dir: c.dir, layers: [0, arch.numLayers], threads: 1 }], promptIds, sampling, maxTokens: tokens, cheat: c.cheat });
        const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, span: checker });
        const key = v.status + (v.reason ? ` ${v.reason}` : '');
        verdicts[key] = (verdicts[key] ?? 0) + 1;
        const planned = await planCheck(job.ticket, promptIds, job.chunks);
        if (!planned.ok) throw new Error(planned.verdict.detail);
        const s = checker.openSession();
        const out = await forwardChain([s], Int32Array.from(planned.plan.sequence), { logitsToKeep: planned.plan.logitsToKeep });
        s.dispose();
        const fh = lastRows(out.finalHidden, out.seqLen, arch.hiddenSize, planned.plan.logitsToKeep);
        planned.plan.chunks.forEach((ch, j) => {
          const r = compareHidden(ch.hiddenCommitment, fh.subarray(j * arch.hiddenSize, (j + 1) * arch.hiddenSize), 1, arch.hiddenSize, open);
          rows.push({ mean: r.mantissaErrMean, median: r.mantissaErrMedian, overlap: r.indexOverlap, exp: r.maxExpMismatch });
        });
      }
    }
    const q = (f: (x: (typeof rows)[number]) => number) => {
      const v = rows.map(f).sort((a, b) => a - b);
      return `${+v[0]!.toFixed(3)} / ${+v[v.length >> 1]!.toFixed(3)} / ${+v[v.length - 1]!.toFixed(3)}`;
    };
    table[name] = { rows: rows.length, 'mantissa mean min/p50/max': q((x) => x.mean), 'median min/p50/max': q((x) => x.median), 'overlap min/p50/max': q((x) => x.overlap), 'exp mismatch min/p50/max': q((x) => x.exp), verdicts: JSON.stringify(verdicts) };
  }
  await checker.close();
  console.log(`separation on ${which} (${format} ticket; per-row figures, units of 2^-15)`);
  console.table(table);
}
