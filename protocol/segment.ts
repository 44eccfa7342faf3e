/**
 * Segments of a hop check (docs/trust.md §2, "Covering chains"): when no independent agent holds
 * exactly a hop's layers (nor the whole model), the edge has the hop re-run by a chain of agents
 * whose spans cover it, one segment each, in order. The first segment starts from the hop's own
 * input (the ticket's tokens for the head, else the disclosed activations it received); each
 * later one from the float32 rows the previous segment's checker returned; the last one is judged
 * against the hop's output like any hop check. A segment that does not end the hop is not judged:
 * its checker signs a verdict that commits to its input and output by SHA-256
 * (`evidence.segment`) and returns the rows beside it (`SegmentAnswer.segmentOutput`).
 *
 * @example
 * const req = { ...hopCheckRequest(request, 0), segment: { layers: [1, 2], input: toBase64Url(rows) } };
 * const ok = segmentOutputMatches(answer.segmentOutput, verdict.evidence.segment?.outputHash);
 */
import { z } from 'zod';
import { fromBase64Url, sha256Hex, toBase64Url } from './bytes.js';

/** Longest base64url string of one segment's input or output (48 MiB of float32 rows). */
export const MAX_SEGMENT_CHARS = 64 * 1024 * 1024;

const layerIndex = z.number().int().nonnegative().max(4096);

/** `segment` of a check request: which layers of the hop to re-run, and from what. */
export const segmentRequestSchema = z
  .object({
    layers: z.tuple([layerIndex, layerIndex]),
    /** The previous segment's output: float32 rows [positions, hidden], base64url. Absent: the segment starts the hop. */
    input: z.string().max(MAX_SEGMENT_CHARS).optional(),
  })
  .refine((s) => s.layers[0] < s.layers[1], { message: 'a segment covers at least one layer', path: ['layers'] });
export type SegmentRequest = z.infer<typeof segmentRequestSchema>;

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** `evidence.segment` of a segment's verdict: what its checker ran, on what, to what. */
export const segmentEvidenceSchema = z.object({
  layers: z.tuple([layerIndex, layerIndex]),
  /** SHA-256 of the input rows it was given (absent: the hop's own input). */
  inputHash: hex64.optional(),
  /** SHA-256 of the rows it returned (absent: the last segment, judged instead). */
  outputHash: hex64.optional(),
});
export type SegmentEvidence = z.infer<typeof segmentEvidenceSchema>;

/** What a checker answers for a segment that does not end the hop, beside its signed verdict. */
export const segmentAnswerSchema = z.object({ segmentOutput: z.string().max(MAX_SEGMENT_CHARS).optional() });

/** The bytes float32 rows travel as (little-endian, as the platforms we run on store them). */
function rowBytes(rows: Float32Array): Uint8Array {
  return new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
}

/** SHA-256 hex of float32 rows as they travel. */
export function rowsHash(rows: Float32Array): Promise<string> {
  return sha256Hex(rowBytes(rows));
}

/** A segment's rows (input or output) as they travel: base64url of their bytes (`decodeSegmentRows` reads them). */
export function encodeSegmentRows(rows: Float32Array): string {
  return toBase64Url(rowBytes(rows));
}

/** Decodes a segment's rows (input or output); null unless valid base64url of whole float32 values. */
export function decodeSegmentRows(text: string): Float32Array | null {
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(text);
  } catch {
    return null;
  }
  if (bytes.length === 0 || bytes.length % 4 !== 0) return null;
  return new Float32Array(bytes.slice().buffer);
}
