/**
 * A hop's attestation chunks over the life of a session: the unsealed chunk each step adds to,
 * this hop's signed attestation of it when it is sealed, and what the hop committed to, kept for
 * re-execution checks (input-store.ts) once the whole route sealed it. The attestation itself is
 * built in attest.ts; when a step seals its chunk is the head's call (head-job.ts).
 *
 * @example
 * const chunk = unsealedChunk(entry, chainStep.chunkFrom);  // refuses a frame naming another start
 * chunk.inputs.push(received);
 * const { signed, hash } = signChunk(core, entry, ctx, to, prevHash, isLastHop);
 * recordSealedChunk(core, entry, ctx, to);
 */
import { concatByteList } from '../../protocol/bytes.js';
import type { SignedAttestation } from '../../protocol/attestation.js';
import type { JobTicket } from '../../protocol/ticket.js';
import { attestChunk, chunkHiddenCommitment, chunkOutputTopLoc, headInputCommitment, newUnsealedChunk, tokenCommitmentSync, type HopContext, type UnsealedChunk } from './attest.js';
import type { CoreContext } from './core-context.js';
import { AgentError } from './errors.js';
import type { SessionEntry } from './session-manager.js';

/** What attest.ts needs to know about this hop for one job's attestations. */
export function hopContext(core: Pick<CoreContext, 'agentId' | 'span' | 'crypto' | 'clock'>, ticket: JobTicket, hash: string, hop: number): HopContext {
  return { ticket, ticketHash: hash, agentId: core.agentId, hop, layers: core.span.layers, crypto: core.crypto, clock: core.clock };
}

/** The hop's unsealed chunk, started at `from` if there is none; a frame naming another start is refused. */
export function unsealedChunk(entry: SessionEntry, from: number): UnsealedChunk {
  if (!entry.chunk) entry.chunk = newUnsealedChunk(from);
  else if (entry.chunk.from !== from) throw new AgentError('bad_frame', `the open chunk of job ${entry.jobId} starts at step ${entry.chunk.from}, the frame says ${from}`);
  return entry.chunk;
}

/** Signs this hop's attestation of its unsealed chunk, steps [chunk.from, to). */
export function signChunk(core: Pick<CoreContext, 'crypto' | 'span'>, entry: SessionEntry, ctx: HopContext, to: number, prevHash: string | null, last: boolean): { signed: SignedAttestation; hash: string } {
  const chunk = entry.chunk!;
  const inputCommitment =
    ctx.hop === 0
      ? headInputCommitment(core.crypto, ctx.ticket, chunk.from === ctx.ticket.prefixTokens, chunk.fed)
      : core.crypto.sha256Hex(concatByteList(chunk.inputs));
  if (last) {
    return attestChunk(ctx, {
      steps: [chunk.from, to],
      inputCommitment,
      outputCommitment: tokenCommitmentSync(core.crypto, chunk.tokens),
      outputTokenIds: [...chunk.tokens],
      hiddenCommitment: chunkHiddenCommitment(chunk),
      prevHash,
    });
  }
  const output = concatByteList(chunk.outputs);
  const outputCommitment = core.crypto.sha256Hex(output);
  const outputTopLoc = output.length > 0 ? chunkOutputTopLoc(output, ctx.ticket.dtype, core.span.manifest.architecture.hiddenSize, outputCommitment) : undefined;
  return attestChunk(ctx, { steps: [chunk.from, to], inputCommitment, outputCommitment, outputTopLoc, prevHash });
}

/** The chunk is attested by the whole route: keep what this hop committed to (for checks) and start afresh. */
export function recordSealedChunk(core: Pick<CoreContext, 'inputs' | 'span'>, entry: SessionEntry, ctx: HopContext, to: number): void {
  const chunk = entry.chunk!;
  entry.chunk = undefined;
  const meta = { dtype: ctx.ticket.dtype, hiddenSize: core.span.manifest.architecture.hiddenSize };
  core.inputs.record(ctx.ticket.jobId, ctx.hop, meta, {
    steps: [chunk.from, to],
    ...(ctx.hop === 0 ? { inputTokenIds: chunk.fed } : { input: concatByteList(chunk.inputs) }),
    ...(chunk.outputs.length > 0 ? { output: concatByteList(chunk.outputs) } : {}),
  });
}
