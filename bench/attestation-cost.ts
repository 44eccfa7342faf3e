/**
 * What trust costs per generated token, against the `small` preset's decode time per token:
 *  - agent (last hop): TOPLOC commitment of the token's final hidden row, token commitment,
 *    attestation hash and Ed25519 signature; a middle hop hashes its output activations instead;
 *  - edge: ChainVerifier.verifyChunk of the token's chunk (schema, hashes, chain, Ed25519 verify
 *    per hop).
 * Target: each side <= 3% of the decode time per token.
 *
 *   node --import tsx bench/attestation-cost.ts [--tokens 512] [--hops 1] [--decode 64] [--threads 2] [--k 16] [--preset small]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { attestationHash, ChainVerifier, signAttestation, tokenCommitment, type Attestation, type SignedAttestation } from '../protocol/attestation.js';
import { encodeTokenIds, sha256Hex } from '../protocol/bytes.js';
import { activationCommitment } from '../protocol/check.js';
import { commitHidden } from '../protocol/commitment.js';
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
  },
});
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

// Agent side: everything the route does per token to attest, all hops together.
async function attestAll(): Promise<{ chunks: SignedAttestation[][]; ms: number }> {
  const chunks: SignedAttestation[][] = [];
  let prevHash: string | null = null;
  let lastToken = -1;
  const t0 = performance.now();
  for (let step = 0; step < N; step++) {
    const token = 100 + (step % 1000);
    const row = decode.rows[step % decode.rows.length]!;
    const chunk: SignedAttestation[] = [];
    for (let h = 0; h < hops; h++) {
      const last = h === hops - 1;
      const inputCommitment = h === 0 ? (step === 0 ? ticket.inputHash : await tokenCommitment([lastToken])) : await activationCommitment(activation);
      const att: Attestation = {
        v: 1, ticketHash: tHash, jobId: 'bench', agentId: route[h]!.agentId, modelId, hop: h, layers: route[h]!.layers, steps: [step, step + 1], inputCommitment,
        outputCommitment: last ? await tokenCommitment([token]) : await activationCommitment(activation),
        ...(last ? { outputTokenIds: [token], hiddenCommitment: commitHidden(row, 1, H, { k }) } : {}),
        prevHash, issuedAt: now,
      };
      chunk.push(await signAttestation(keys[h]!.privateKey, att));
      prevHash = await attestationHash(att);
    }
    lastToken = token;
    chunks.push(chunk);
  }
  return { chunks, ms: (performance.now() - t0) / N };
}
await attestAll(); // warm-up (JIT)
const { chunks, ms: agentMs } = await attestAll();

// Edge side: inline verification of every chunk (JSON round trip included, as the edge parses NDJSON).
const wire = chunks.map((c) => JSON.stringify(c));
async function verifyAll(): Promise<number> {
  const verifier = new ChainVerifier({ ticket, ticketHash: tHash, numLayers: L, keys: Object.fromEntries(route.map((r, i) => [r.agentId, keys[i]!.publicKey])) });
  const t0 = performance.now();
  for (const line of wire) {
    const r = await verifier.verifyChunk(JSON.parse(line));
    if (!r.ok) throw new Error(`${r.reason}: ${r.detail}`);
  }
  return (performance.now() - t0) / N;
}
await verifyAll(); // warm-up (JIT)
const edgeMs = await verifyAll();

console.log(`model ${preset}: hidden ${H}, ${L} layers, ${hops} hop(s), ${threads} threads, k ${k}`);
console.table({
  'decode time per token (ms)': { value: +decode.ms.toFixed(2), share: '100%' },
  'agent: commit + sign per token, all hops (ms)': { value: +agentMs.toFixed(3), share: `${((agentMs / decode.ms) * 100).toFixed(2)}%` },
  'edge: ChainVerifier per token (ms)': { value: +edgeMs.toFixed(3), share: `${((edgeMs / decode.ms) * 100).toFixed(2)}%` },
  'attestation chunk bytes per token (JSON)': { value: Math.round(wire.reduce((s, w) => s + w.length, 0) / N), share: '' },
});

// Where the time goes, per operation (same process, after the runs above).
async function perOp(label: string, reps: number, fn: (i: number) => unknown): Promise<[string, { ms: number }]> {
  for (let i = 0; i < 50; i++) await fn(i);
  const t = performance.now();
  for (let i = 0; i < reps; i++) await fn(i);
  return [label, { ms: +((performance.now() - t) / reps).toFixed(4) }];
}
const sample = chunks[1]![hops - 1]!;
const bytes = new TextEncoder().encode(JSON.stringify(sample.att));
const { signBytes, verifyBytes } = await import('../protocol/keys.js');
const { signedAttestationSchema } = await import('../protocol/attestation.js');
const sig = await signBytes(keys[hops - 1]!.privateKey, bytes);
console.table(
  Object.fromEntries([
    await perOp('commitHidden (1 row, k)', 2000, () => commitHidden(decode.rows[0]!, 1, H, { k })),
    await perOp('tokenCommitment (sha256)', 2000, (i) => tokenCommitment([i])),
    await perOp('activationCommitment (sha256 of one hidden row)', 2000, () => activationCommitment(activation)),
    await perOp('attestationHash (canonical JSON + sha256)', 2000, () => attestationHash(sample.att)),
    await perOp('Ed25519 sign', 1000, () => signBytes(keys[hops - 1]!.privateKey, bytes)),
    await perOp('Ed25519 verify', 1000, () => verifyBytes(keys[hops - 1]!.publicKey, sig, bytes)),
    await perOp('zod parse of one signed attestation', 2000, () => signedAttestationSchema.parse(sample)),
  ]),
);
