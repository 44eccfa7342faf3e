/**
 * A hop's TOPLOC commitment of the activations it hands on (`outputTopLoc` in the attestations of
 * every hop but the last; docs/trust.md §1): the same encoding as the last hop's
 * `hiddenCommitment` (commitment.ts), over the rows of the chunk's output tensor, [rows, hidden]
 * (float16 activations decoded to float32 first). The exact SHA-256 (`outputCommitment`) binds the
 * bytes but only matches a disclosure of them; this commitment survives float noise, so a checker
 * can re-run the hop on its input and judge its output with no disclosure of it.
 *
 * Rows: every row of a chunk of at most {@link MAX_OUTPUT_TOPLOC_ROWS}; of a longer one (a long
 * prompt's prefill), its last row and 63 others drawn from a generator seeded by the chunk's
 * `outputCommitment` (so the hop cannot choose them without changing the bytes it sends). This
 * keeps an attestation under {@link MAX_OUTPUT_TOPLOC_CHARS} whatever the prompt length.
 *
 * @example
 * // agent, hop h < last, sealing a chunk whose output bytes hash to `outputCommitment`
 * att.outputTopLoc = commitOutputRows(rows, numRows, hidden, outputCommitment);
 * // checker, after re-running hop h on its input
 * const j = judgeHopCommitment(plan, h, recomputedRows, hidden, tolerancesFor(ticket.dtype));
 * if (j.kind === 'disagrees') blame(j.verdict);
 */
import type { CheckPlan, CheckVerdict } from './check.js';
import { commitHidden, compareHidden, decodeCommitment, DEFAULT_TOPK, tolerancesFor, type CompareResult, type CompareTolerances } from './commitment.js';
import { MAX_OUTPUT_TOPLOC_CHARS } from './limits.js';

export { MAX_OUTPUT_TOPLOC_CHARS };

/** Rows of one chunk's output a hop commits to (all of them up to this many). */
export const MAX_OUTPUT_TOPLOC_ROWS = 64;

/** sfc32 over the first 128 bits of a hex seed: the same draws on every host. */
function generator(seedHex: string): () => number {
  const word = (i: number) => Number.parseInt(seedHex.slice(i * 8, i * 8 + 8).padEnd(8, '0'), 16) >>> 0;
  let a = word(0);
  let b = word(1);
  let c = word(2);
  let d = word(3);
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

/**
 * The rows of a chunk of `numRows` output rows that its `outputTopLoc` covers, ascending: all of
 * them when there are at most {@link MAX_OUTPUT_TOPLOC_ROWS}; otherwise the last row and
 * MAX - 1 distinct others (Floyd's sampling, drawn from `seedHex`, the chunk's outputCommitment).
 *
 * @example
 * outputTopLocRows(3, hash); // [0, 1, 2]
 * outputTopLocRows(1000, hash).length; // 64, ending with 999
 */
export function outputTopLocRows(numRows: number, seedHex: string): number[] {
  if (numRows <= MAX_OUTPUT_TOPLOC_ROWS) return Array.from({ length: numRows }, (_, i) => i);
  const next = generator(seedHex);
  const n = numRows - 1;
  const picked = new Set<number>();
  for (let j = n - (MAX_OUTPUT_TOPLOC_ROWS - 1); j < n; j++) {
    const t = Math.floor((next() * (j + 1)) / 2 ** 32);
    picked.add(picked.has(t) ? j : t);
  }
  return [...picked, n].sort((x, y) => x - y);
}

function gather(rows: Float32Array, picked: readonly number[], hiddenSize: number): Float32Array {
  const out = new Float32Array(picked.length * hiddenSize);
  picked.forEach((r, i) => out.set(rows.subarray(r * hiddenSize, (r + 1) * hiddenSize), i * hiddenSize));
  return out;
}

/**
 * A hop's `outputTopLoc` of one chunk: rows [numRows, hiddenSize] of what it sends (float32),
 * `outputCommitment` the SHA-256 (hex) of those bytes. k = min(16, hiddenSize).
 */
export function commitOutputRows(rows: Float32Array, numRows: number, hiddenSize: number, outputCommitment: string): string {
  return commitPickedRows(gather(rows, outputTopLocRows(numRows, outputCommitment), hiddenSize), hiddenSize);
}

/** The same, from the committed rows alone (`outputTopLocRows` of the chunk, in order), [picked, hiddenSize]. */
export function commitPickedRows(picked: Float32Array, hiddenSize: number): string {
  return commitHidden(picked, picked.length / hiddenSize, hiddenSize, { k: Math.min(DEFAULT_TOPK, hiddenSize) });
}

/**
 * Compares an `outputTopLoc` with rows [numRows, hiddenSize] (recomputed, or received); never
 * throws. `failedRow` is the chunk's row, not the index among the committed ones.
 */
export function compareOutputRows(commitment: unknown, rows: Float32Array, numRows: number, hiddenSize: number, outputCommitment: string, tolerances: CompareTolerances): CompareResult {
  if (rows.length < numRows * hiddenSize) return { ok: false, maxExpMismatch: 1, mantissaErrMean: Infinity, mantissaErrMedian: Infinity, indexOverlap: 0, failedRow: -1, detail: 'rows too short' };
  const picked = outputTopLocRows(numRows, outputCommitment);
  return comparePickedRows(commitment, gather(rows, picked, hiddenSize), picked, hiddenSize, tolerances);
}

/** The same, from the committed rows alone: `rows` [picked.length, hiddenSize], `picked` their chunk rows. */
export function comparePickedRows(commitment: unknown, rows: Float32Array, picked: readonly number[], hiddenSize: number, tolerances: CompareTolerances): CompareResult {
  if (typeof commitment === 'string' && commitment.length > MAX_OUTPUT_TOPLOC_CHARS) {
    return { ok: false, maxExpMismatch: 1, mantissaErrMean: Infinity, mantissaErrMedian: Infinity, indexOverlap: 0, failedRow: -1, detail: `outputTopLoc exceeds ${MAX_OUTPUT_TOPLOC_CHARS} characters` };
  }
  const r = compareHidden(commitment, rows, picked.length, hiddenSize, tolerances);
  return r.failedRow >= 0 ? { ...r, failedRow: picked[r.failedRow]!, detail: r.detail.replace(/^row \d+/, `row ${picked[r.failedRow]}`) } : r;
}

/**
 * What a receiving hop accepts as its predecessor's `outputTopLoc` of the bytes it received:
 * committed values exactly those bytes' (same floats, no noise to allow), the index set within
 * the ticket's tolerance (ties at the k-th magnitude may be broken either way).
 */
export function receivedTolerances(dtype: 'float32' | 'float16'): CompareTolerances {
  return { ...tolerancesFor(dtype), maxExpMismatch: 0, maxMantissaErrMean: 0, maxMantissaErrMedian: 0 };
}

/**
 * Where each chunk's rows sit among the positions a check re-runs (input ++ generated[0 .. n-2]):
 * the first chunk holds the prefill (every input position) and one row per later step; every
 * other chunk one row per step.
 */
export function chunkRows(plan: CheckPlan): { start: number; count: number }[] {
  let start = 0;
  return plan.chunks.map((c, i) => {
    const count = c.steps[1] - c.steps[0] + (i === 0 ? plan.inputLength - 1 : 0);
    const at = { start, count };
    start += count;
    return at;
  });
}

/**
 * How a hop's `outputTopLoc` commitments compare with the checker's re-run of the hop:
 * - `absent`: no chunk carries one (an older agent): nothing to judge by;
 * - `malformed`: one does not decode, or commits to another hidden size or row count: the hop's
 *   own signed bytes are wrong, whatever its input was;
 * - `disagrees`: one is out of tolerance (the first such chunk and row);
 * - `agrees`: every chunk that carries one is within tolerance; `complete` when every chunk does
 *   (only then does the re-run stand for what the hop sent).
 */
export type HopCommitmentJudgement =
  | { kind: 'absent' }
  | { kind: 'agrees'; complete: boolean }
  | { kind: 'malformed'; verdict: CheckVerdict }
  | { kind: 'disagrees'; verdict: CheckVerdict };

/**
 * Judges hop `hop` (not the last) by its own `outputTopLoc` commitments: `recomputed` is its
 * span's output re-run over every position of the job, [positions, hiddenSize].
 */
export function judgeHopCommitment(plan: CheckPlan, hop: number, recomputed: Float32Array, hiddenSize: number, tolerances?: CompareTolerances): HopCommitmentJudgement {
  const tol = tolerances ?? tolerancesFor(plan.ticket.dtype);
  const agentId = plan.ticket.route[hop]?.agentId;
  const layout = chunkRows(plan);
  const verdict = (reason: 'missing_commitment' | 'hop_output_mismatch', step: number, detail: string, r?: CompareResult): CheckVerdict => {
    const evidence: CheckVerdict['evidence'] = { step };
    if (r) {
      const { ok: _ok, ...stats } = r;
      evidence.hidden = stats;
    }
    return { jobId: plan.jobId, status: 'fail', reason, hop, agentId, detail, evidence };
  };
  let carried = 0;
  for (let c = 0; c < plan.chunks.length; c++) {
    const chunk = plan.chunks[c]!;
    const att = chunk.attestations[hop];
    if (att?.outputTopLoc === undefined) continue;
    carried++;
    const { start, count } = layout[c]!;
    const step = chunk.steps[0];
    const decoded = decodeCommitment(att.outputTopLoc);
    const rows = outputTopLocRows(count, att.outputCommitment).length;
    const shape = !decoded.ok ? decoded.detail : decoded.commitment.hiddenSize !== hiddenSize ? `hidden size ${decoded.commitment.hiddenSize}, the model has ${hiddenSize}` : decoded.commitment.numRows !== rows ? `${decoded.commitment.numRows} rows, the chunk's output has ${rows} to commit` : null;
    if (shape) return { kind: 'malformed', verdict: verdict('missing_commitment', step, `hop ${hop} chunk at step ${step}: its outputTopLoc is unusable (${shape})`) };
    const r = compareOutputRows(att.outputTopLoc, recomputed.subarray(start * hiddenSize, (start + count) * hiddenSize), count, hiddenSize, att.outputCommitment, tol);
    if (!r.ok) {
      // Row j of the first chunk is input position j; the chunk's step rows are its last rows.
      const at = r.failedRow >= 0 ? r.failedRow : 0;
      const stepOf = step + Math.max(0, at - (count - (chunk.steps[1] - step)));
      return { kind: 'disagrees', verdict: verdict('hop_output_mismatch', stepOf, `hop ${hop} position ${start + at}: its own outputTopLoc disagrees with a re-run of its span on its input: ${r.detail}`, r) };
    }
  }
  if (carried === 0) return { kind: 'absent' };
  return { kind: 'agrees', complete: carried === plan.chunks.length };
}
