/**
 * Who forwarded bad bytes between two hops, provably. Hop k receives a chunk's activations from
 * hop k-1 together with hop k-1's signed attestation of the chunk (`ForwardMeta.prev`) and refuses
 * bytes that attestation does not vouch for (pool-agent/server/attest.ts). A refusal alone proves
 * nothing: the edge cannot tell a sender that attested one output and sent another from a link
 * that changed the bytes, or from a receiver that lies about what it got. So the sender also signs
 * what it sends (`senderSig` on every sealing frame): `forwardMessage` binds the job, the ticket,
 * the receiving hop, the chunk's steps and the SHA-256 of every payload of the chunk as sent (the
 * same concatenation, in step order, that the attestation's `outputCommitment` hashes).
 *
 * When that signature verifies, under the key the edge registered for hop k-1, over the hash of
 * the bytes hop k actually received, and those bytes contradict hop k-1's own attestation (another
 * hash, or the same hash but an `outputTopLoc` that does not commit to them), hop k-1 signed two
 * statements that cannot both be true: the refusal carries them (`ForwardEvidence`) and the edge
 * checks them itself before it blames hop k-1 (edge/dispatch/forward-blame.ts). A missing signature,
 * or one over other bytes, proves nothing about either side (docs/trust.md §1).
 *
 * This file holds the signed message, the evidence schema and the byte checks both sides run (no
 * runtime import: the agent and the edge decode activations with the same code).
 *
 * @example
 * const sig = sign(forwardBytes({ jobId, ticketHash, hop: 2, steps: [4, 6], payloadSha256 }));
 * const fault = forwardBytesFault(payload, prev.att, ticket.dtype, hiddenSize); // null: the bytes fit
 */
import { z } from 'zod';
import { signedAttestationSchema, type Attestation } from './attestation.js';
import { utf8 } from './bytes.js';
import { comparePickedRows, outputTopLocRows, receivedTolerances } from './output-commitment.js';

/** Domain of a sending hop's signature over the bytes it forwards (first line of the message). */
export const FORWARD_DOMAIN = 'layernet.forward/1';

/**
 * What a hop signs about a chunk it sent on. `hop` is the receiving hop's route index, so a
 * signature for one successor cannot be shown as one for another.
 */
export interface ForwardStatement {
  jobId: string;
  ticketHash: string;
  hop: number;
  steps: readonly [number, number];
  /** SHA-256 (hex) of every payload of the chunk, concatenated in step order, exactly as sent. */
  payloadSha256: string;
}

/**
 * `layernet.forward/1\n{jobId}\n{ticketHash}\n{hop}\n{from}\n{to}\n{payloadSha256}`. Every field
 * after the job id has a fixed alphabet without newlines, so the message parses from its end and
 * no two statements share one.
 */
export function forwardMessage(s: ForwardStatement): string {
  return `${FORWARD_DOMAIN}\n${s.jobId}\n${s.ticketHash}\n${s.hop}\n${s.steps[0]}\n${s.steps[1]}\n${s.payloadSha256}`;
}

export function forwardBytes(s: ForwardStatement): Uint8Array {
  return utf8(forwardMessage(s));
}

/**
 * Largest payload a refusal carries as evidence (bytes that hash to the attestation but do not
 * fit its `outputTopLoc`): the error frame's metadata and the edge's NDJSON line are bounded at
 * 256 KiB, and 128 KiB is 174,763 base64url characters, which leaves room for the attestation
 * (≤ ~10 KB) and the message. A larger chunk is refused without evidence (not provable).
 */
export const MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES = 128 * 1024;
const MAX_PAYLOAD_CHARS = Math.ceil((MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES * 4) / 3);

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/**
 * A refusal's proof that the sending hop (`prev.att.hop`) forwarded bytes other than it attested.
 * The accused and the steps come from the signed attestation, never from a field of their own.
 */
export const forwardEvidenceSchema = z.object({
  kind: z.literal('bad_forward'),
  /** The sender's signed attestation of the chunk, as it came with the frame. */
  prev: signedAttestationSchema,
  /** The sender's signature (`senderSig` of the sealing frame) over forwardMessage with `receivedSha256`. */
  senderSig: z.string().max(128),
  /** SHA-256 of the chunk's payloads as the refusing hop received them. */
  receivedSha256: hex64,
  /** Only when the hash matches `prev.att.outputCommitment`: the payloads themselves, base64url. */
  payload: z
    .string()
    .max(MAX_PAYLOAD_CHARS)
    .regex(/^[A-Za-z0-9_-]*$/)
    .optional(),
});
export type ForwardEvidence = z.infer<typeof forwardEvidenceSchema>;

/** How the bytes contradict the sender's attestation. */
export type ForwardFault = 'hash_mismatch' | 'not_rows' | 'toploc_mismatch';

/** Activation bytes (little-endian, the ticket's dtype) as float32 values. */
export function activationValues(bytes: Uint8Array, dtype: 'float32' | 'float16'): Float32Array {
  const size = dtype === 'float32' ? 4 : 2;
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  if (dtype === 'float32') return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 2);
  const bits = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 1);
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = fromFloat16Bits(bits[i]!);
  return out;
}

/** Float32 value of binary16 bits (exact: every binary16 value is a float32). */
function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * The rows of activation bytes [rows, hiddenSize] that a chunk's `outputTopLoc` covers (seeded by
 * the bytes' SHA-256, `outputCommitment`), as float32: only those rows are decoded (a long float16
 * prefill is not widened whole). Null when the bytes are not whole rows.
 */
export function committedActivationRows(bytes: Uint8Array, dtype: 'float32' | 'float16', hiddenSize: number, outputCommitment: string): { values: Float32Array; picked: number[] } | null {
  const rowBytes = hiddenSize * (dtype === 'float32' ? 4 : 2);
  const numRows = bytes.length / rowBytes;
  if (!Number.isInteger(numRows) || numRows < 1) return null;
  const picked = outputTopLocRows(numRows, outputCommitment);
  const values = new Float32Array(picked.length * hiddenSize);
  picked.forEach((r, i) => values.set(activationValues(bytes.subarray(r * rowBytes, (r + 1) * rowBytes), dtype), i * hiddenSize));
  return { values, picked };
}

/**
 * Whether bytes that hash to `att.outputCommitment` are what its `outputTopLoc` commits to (exact
 * values: received, not recomputed, so no float noise is allowed; `receivedTolerances`). Null when
 * they fit, or when the attestation carries no `outputTopLoc` (nothing else to contradict). The
 * receiving hop refuses on it, and the edge re-runs it on the disclosed payload before it blames.
 */
export function forwardBytesFault(bytes: Uint8Array, att: Pick<Attestation, 'outputCommitment' | 'outputTopLoc'>, dtype: 'float32' | 'float16', hiddenSize: number): { fault: Exclude<ForwardFault, 'hash_mismatch'>; detail: string } | null {
  if (att.outputTopLoc === undefined) return null;
  const rows = committedActivationRows(bytes, dtype, hiddenSize, att.outputCommitment);
  if (!rows) return { fault: 'not_rows', detail: `the activations received are not whole rows of ${hiddenSize}` };
  const r = comparePickedRows(att.outputTopLoc, rows.values, rows.picked, hiddenSize, receivedTolerances(dtype));
  return r.ok ? null : { fault: 'toploc_mismatch', detail: `prev's outputTopLoc does not commit to the activations received (${r.detail})` };
}
