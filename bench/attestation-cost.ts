/**
 * What trust costs per generated token, against the `small` preset's decode time per token:
 *  - agent (last hop): TOPLOC commitment of the token's final hidden row, token commitment,
 *    attestation hash and Ed25519 signature; a hop before the last hashes its output activations
 *    and commits to them TOPLOC-style (`outputTopLoc`) instead;
 *  - edge: ChainVerifier.verifyChunk of the token's chunk (schema, hashes, chain, Ed25519 verify
 *    per hop).
 * Target: each side <= 3% of the decode time per token. Measured side by side (alternating
 * repetitions) with one chunk per step and with chunks of `--chunk` steps (the edge's default
 * ATTEST_CHUNK_STEPS is 16); agents sign and the edge verifies once per hop per chunk.
 *
 *   node --import tsx bench/attestation-cost.ts [--tokens 512] [--hops 1] [--chunk 16] [--reps 3] [--decode 64] [--threads 2] [--k 16] [--preset small]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { attestationHash, ChainVerifier, signAttestation, tokenCommitment, type Attestation, type SignedAttestation } from '../protocol/attestation.js';
import { encodeTokenIds, sha256Hex } from '../protocol/bytes.js';
import { activationCommitment } from '../protocol/check.js';
import { commitHidden } from '../protocol/commitment.js';
import { commitOutputRows, compareOutputRows, receivedTolerances } from '../protocol/output-commitment.js';
import { generateSigningKey, type SigningKey } from '../protocol/keys.js';
import { ticketHash, type JobTicket } from '../protocol/ticket.js';
import { buildModel, type PresetName } from '../pool-agent/model/index.js';
import { argmax, forwardChain, loadSpan } from '../pool-agent/runtime/index.js';

const { values } = parseArgs({
  options: {
    tokens: { type: 'string', default: '512' },
    hops: { type: 'string', default: '1' },
    decode: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
    k: { type: 'string', default: '16' },
    preset: { type: 'string', default: 'small' },
    chunk: { type: 'string', default: '16' },
    reps: { type: 'string', default: '3' },
  },
});
const chunkSteps = Number(values.chunk);
const reps = Number(values.reps);
const N = Number(values.tokens);
const hops = Number(values.hops);
const decodeN = Number(values.decode);
const threads = Number(values.threads);
const k = Number(values.k);
const preset = values.preset as PresetName;

const { manifest, modelId, dir } = await buildModel({ preset, dtype: 'float32', seed: 0, outDir: join('.models', preset) });
const { hiddenSize: H, numLayers: L } = manifest.architecture;

// Decode time per token of the model, one span, KV cache, greedy.
const span = await loadSpan(dir, [0, L], { provider: 'cpu', intraOpThreads: threads });
const prompt = Int32Array.from({ length: 32 }, (_, i) => 1 + ((i * 7919) % 31999));
async function decodeMsPerToken(): Promise<{ ms: number; rows: Float32Array[] }> {
  const s = span.openSession();
  let out = await forwardChain([s], prompt);
  const rows: Float32Array[] = [];
  const t0 = performance.now();
  for (let i = 0; i < decodeN; i++) {
    out = await forwardChain([s], Int32Array.of(argmax(out.logits)));
    rows.push(out.finalHidden.slice(0));
  }
  const ms = (performance.now() - t0) / decodeN;
  s.dispose();
  return { ms, rows };
}
await decodeMsPerToken();
const decode = await decodeMsPerToken();
await span.close();

const per = L / hops;
const route = Array.from({ length: hops }, (_, i) => ({ agentId: `agent-${i}`, layers: [Math.round(i * per), Math.round((i + 1) * per)] as [number, number], endpoint: 'http://127.0.0.1:1/' }));
const keys: SigningKey[] = [];
for (let i = 0; i < hops; i++) keys.push(await generateSigningKey());
const promptIds = Array.from(prompt);
const now = Date.now();
const ticket: JobTicket = {
  v: 1, jobId: 'bench', modelId, dtype: 'float32', route, inputHash: await sha256Hex(encodeTokenIds(promptIds)), promptTokens: promptIds.length, prefixTokens: 0,
  limits: { maxTokens: N, deadline: now + 3_600_000 }, sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 }, stopTokenIds: [], nonce: 'bench-nonce-000000001',
  issuedAt: now, expiresAt: now + 3_600_000, edgeKeyId: 'bench',
};
const tHash = await ticketHash(ticket);
const activation = new Float32Array(H).map((_, i) => Math.sin(i)); // one position's activations between hops

/**
 * Agent side: everything the route does to attest N tokens, all hops together, signing once per
 * chunk of `chunkSteps` steps as agents do under a ticket's chunking policy (the prefill step is a
 * chunk of its own). Commitments cover each chunk's concatenated activations / rows / tokens.
 */
async function attestAll(chunkSteps: number): Promise<{ chunks: SignedAttestation[][]; ms: number }> {
  const chunks: SignedAttestation[][] = [];
  let prevHash: string | null = null;
  let lastToken = -1;
  const t0 = performance.now();
  for (let from = 0; from < N; ) {
    const to = from === 0 ? 1 : Math.min(N, from + chunkSteps);
    const rows = to - from;
    const tokens = Array.from({ length: rows }, (_, i) => 100 + ((from + i) % 1000));
    const hidden = new Float32Array(rows * H);
    for (let i = 0; i < rows; i++) hidden.set(decode.rows[(from + i) % decode.rows.length]!, i * H);
    const activations = new Float32Array(rows * H);
    for (let i = 0; i < rows; i++) activations.set(activation, i * H);
    const chunk: SignedAttestation[] = [];
    for (let h = 0; h < hops; h++) {
      const last = h === hops - 1;
      const inputCommitment = h === 0 ? (from === 0 ? ticket.inputHash : await tokenCommitment([lastToken, ...tokens.slice(0, -1)])) : await activationCommitment(activations);
      const outputCommitment = last ? await tokenCommitment(tokens) : await activationCommitment(activations);
      const att: Attestation = {
        v: 1, ticketHash: tHash, jobId: 'bench', agentId: route[h]!.agentId, modelId, hop: h, layers: route[h]!.layers, steps: [from, to], inputCommitment,
        outputCommitment,
        ...(last ? { outputTokenIds: tokens, hiddenCommitment: commitHidden(hidden, rows, H, { k }) } : { outputTopLoc: commitOutputRows(activations, rows, H, outputCommitment) }),
        prevHash, issuedAt: now,
      };
      chunk.push(await signAttestation(keys[h]!.privateKey, att));
      prevHash = await attestationHash(att);
    }
    lastToken = tokens[tokens.length - 1]!;
    chunks.push(chunk);
    from = to;
  }
  return { chunks, ms: (performance.now() - t0) / N };
}

/** Edge side: inline verification of every chunk (JSON round trip included, as the edge parses NDJSON). */
async function verifyAll(wire: string[]): Promise<number> {
  const verifier = new ChainVerifier({ ticket, ticketHash: tHash, numLayers: L, keys: Object.fromEntries(route.map((r, i) => [r.agentId, keys[i]!.publicKey])) });
  const t0 = performance.now();
  for (const line of wire) {
    const r = await verifier.verifyChunk(JSON.parse(line));
    if (!r.ok) throw new Error(`${r.reason}: ${r.detail}`);
  }
  return (performance.now() - t0) / N;
}

console.log(`model ${preset}: hidden ${H}, ${L} layers, ${hops} hop(s), ${threads} threads, k ${k}; ${N} tokens; decode ${decode.ms.toFixed(2)} ms/token`);
const results: Record<string, Record<string, string | number>> = {};
let chunks: SignedAttestation[][] = [];
// Alternating repetitions, so both layouts see the same machine load; medians reported.
const layouts = [...new Set([1, chunkSteps])];
const agentRuns = new Map<number, number[]>(layouts.map((c) => [c, []]));
const edgeRuns = new Map<number, number[]>(layouts.map((c) => [c, []]));
const wireOf = new Map<number, string[]>();
for (const c of layouts) {
  const warm = await attestAll(c); // warm-up (JIT)
  await verifyAll(warm.chunks.map((x) => JSON.stringify(x)));
}
for (let rep = 0; rep < reps; rep++) {
  for (const c of layouts) {
    const a = await attestAll(c);
    agentRuns.get(c)!.push(a.ms);
    const wire = a.chunks.map((x) => JSON.stringify(x));
    wireOf.set(c, wire);
    edgeRuns.get(c)!.push(await verifyAll(wire));
    if (c === 1) chunks = a.chunks;
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const c of layouts) {
  const agentMs = median(agentRuns.get(c)!);
  const edgeMs = median(edgeRuns.get(c)!);
  const wire = wireOf.get(c)!;
  results[c === 1 ? 'one chunk per step' : `chunks of ${c} steps`] = {
    'agent ms/token (all hops)': +agentMs.toFixed(4),
    'agent share': `${((agentMs / decode.ms) * 100).toFixed(2)}%`,
    'edge ms/token': +edgeMs.toFixed(4),
    'edge share': `${((edgeMs / decode.ms) * 100).toFixed(2)}%`,
    'JSON bytes/token': Math.round(wire.reduce((s, w) => s + w.length, 0) / N),
  };
}
console.table(results);
console.log(JSON.stringify({ bench: 'attestation-cost', preset, hops, tokens: N, decodeMsPerToken: decode.ms, results }));

// Where the time goes, per operation (same process, after the runs above).
async function perOp(label: string, reps: number, fn: (i: number) => unknown): Promise<[string, { ms: number }]> {
  for (let i = 0; i < 50; i++) await fn(i);
  const t = performance.now();
  for (let i = 0; i < reps; i++) await fn(i);
  return [label, { ms: +((performance.now() - t) / reps).toFixed(4) }];
}
/** A hop's outputTopLoc (every hop but the last), per chunk: decode chunks, a short prefill, a long one (64 sampled rows). */
async function outputTopLocOps(): Promise<[string, { ms: number }][]> {
  const seed = 'ab'.repeat(32);
  const of = (n: number) => {
    const r = new Float32Array(n * H);
    for (let i = 0; i < n; i++) r.set(decode.rows[i % decode.rows.length]!, i * H);
    return r;
  };
  const out: [string, { ms: number }][] = [];
  for (const n of [1, 16, 32, 2048]) {
    const r = of(n);
    out.push(await perOp(`outputTopLoc commit (chunk of ${n} row${n > 1 ? 's' : ''})`, n > 64 ? 200 : 1000, () => commitOutputRows(r, n, H, seed)));
  }
  const r16 = of(16);
  const c16 = commitOutputRows(r16, 16, H, seed);
  out.push(await perOp("outputTopLoc receiver's check (chunk of 16 rows)", 1000, () => compareOutputRows(c16, r16, 16, H, seed, receivedTolerances('float32'))));
  return out;
}

const sample = chunks[1]![hops - 1]!;
const bytes = new TextEncoder().encode(JSON.stringify(sample.att));
const { signBytes, verifyBytes } = await import('../protocol/keys.js');
const { signedAttestationSchema } = await import('../protocol/attestation.js');
const sig = await signBytes(keys[hops - 1]!.privateKey, bytes);
console.table(
  Object.fromEntries([
    await perOp('commitHidden (1 row, k)', 2000, () => commitHidden(decode.rows[0]!, 1, H, { k })),
    ...(await outputTopLocOps()),
    await perOp('tokenCommitment (sha256)', 2000, (i) => tokenCommitment([i])),
    await perOp('activationCommitment (sha256 of one hidden row)', 2000, () => activationCommitment(activation)),
    await perOp('attestationHash (canonical JSON + sha256)', 2000, () => attestationHash(sample.att)),
    await perOp('Ed25519 sign', 1000, () => signBytes(keys[hops - 1]!.privateKey, bytes)),
    await perOp('Ed25519 verify', 1000, () => verifyBytes(keys[hops - 1]!.publicKey, sig, bytes)),
    await perOp('zod parse of one signed attestation', 2000, () => signedAttestationSchema.parse(sample)),
  ]),
);
