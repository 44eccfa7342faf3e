/**
 * One generation step at this hop, the same for the head and for later hops: runs the span on the
 * job's KV session, adds what it received and computed to the hop's unsealed chunk, samples at
 * the last hop, hands the activations on to the next hop, and signs the chunk when the step seals
 * it. The head's job loop (head-job.ts) and the frame handler of later hops (downstream-hop.ts)
 * call it with the session locked.
 *
 * `runSpan` is the one place a step reaches the span: a step scheduler that batches the decode
 * steps of every session ready at this hop goes there (see docs/architecture.md).
 *
 * @example
 * const result = await sessions.withSession(jobId, hash, (e) => steps.runStep(e, ctx, input, payload, [s, s + 1], chain, next, false));
 */
import type { SignedAttestation } from '../../protocol/attestation.js';
import { bytesOf } from '../../protocol/bytes.js';
import { sampleToken } from '../runtime/sampler.js';
import type { SpanInput, SpanOutput } from '../runtime/types.js';
import { lastHiddenRow, type HopContext } from './attest.js';
import { recordSealedChunk, signChunk, unsealedChunk } from './chunk-attestation.js';
import type { CoreContext } from './core-context.js';
import { AgentError } from './errors.js';
import { tokensFrame } from './hop-frames.js';
import type { RemoteStage } from './remote-stage.js';
import type { SessionEntry } from './session-manager.js';

/** A step's result at some hop: its attestation and every later one (sealing steps only), and the sampled token. */
export interface StepResult {
  attestations: SignedAttestation[];
  tokenIds: number[];
  /** Head over links: a sealing step's attestations, still on their way back (`attestations` is then empty). */
  later?: Promise<SignedAttestation[]>;
}

/**
 * Where a step stands in its attestation chunk: the chunk's first step, whether this step seals
 * it, and the hash it chains to (a promise at the head while the previous chunk's attestations
 * are still coming back).
 */
export interface StepChain {
  chunkFrom: number;
  seal: boolean;
  prevHash: string | null | Promise<string | null>;
}

export class StepRunner {
  constructor(private readonly core: CoreContext) {}

  /**
   * Runs the span for one session's step. Today each step runs alone, as soon as its frame (or the
   * head's loop) gets here; a scheduler gathering the ready decode steps of all sessions into one
   * batch would take over this call.
   */
  private async runSpan(entry: SessionEntry, input: SpanInput): Promise<SpanOutput> {
    const started = performance.now();
    const out = await entry.session.forward(input);
    this.core.metrics.spanDuration.observe((performance.now() - started) / 1000);
    return out;
  }

  /**
   * Runs one step on this hop's session and, when the span is not the last, on every later hop,
   * adding what it received and computed to the hop's unsealed chunk. A sealing step signs the chunk
   * [chain.chunkFrom, steps[1]) and returns this hop's attestation and every later one; an
   * unsealed step returns the sampled token alone. `received` is the payload of a downstream hop's
   * frame; `opening` says the step is the job's opening (prefill) frame, which opens the sessions
   * of later hops.
   */
  async runStep(
    entry: SessionEntry,
    ctx: HopContext,
    input: SpanInput,
    received: Uint8Array | null,
    steps: [number, number],
    chain: StepChain,
    next: RemoteStage | null,
    opening: boolean,
  ): Promise<StepResult> {
    const seqLen = input.kind === 'tokens' ? input.ids.length : input.seqLen;
    if (entry.session.length + seqLen > entry.maxPositions) {
      throw new AgentError('invalid_request', `step would hold ${entry.session.length + seqLen} positions, the ticket allows ${entry.maxPositions}`);
    }
    const chunk = unsealedChunk(entry, chain.chunkFrom);
    const out = await this.runSpan(entry, input);
    if (input.kind === 'tokens') chunk.fed.push(...input.ids);
    else chunk.inputs.push(received!);
    if (out.kind === 'logits') {
      if (next) throw new AgentError('internal_error', 'the last span of the model is not the last hop');
      const vocab = out.logits.length / out.logitsKept;
      const token = sampleToken(out.logits.subarray((out.logitsKept - 1) * vocab), ctx.ticket.sampling, steps[0]);
      // The head waits on its tap for every step after the prefill: the token goes there at once,
      // before this hop signs (a sealing step's attestations follow back up the chain).
      if (entry.tap) {
        if (entry.tap.error) throw new AgentError('upstream_error', `the head's tap for job ${entry.jobId} is closed`);
        entry.tap.send(tokensFrame({ attestations: [], tokenIds: [token] }));
      }
      chunk.tokens.push(token);
      chunk.hiddenRows.push(lastHiddenRow(out.finalHidden, out.seqLen));
      if (!chain.seal) return { attestations: [], tokenIds: [token] };
      const { signed } = signChunk(this.core, entry, ctx, steps[1], await chain.prevHash, true);
      recordSealedChunk(this.core, entry, ctx, steps[1]);
      return { attestations: [signed], tokenIds: [token] };
    }
    if (!next) throw new AgentError('internal_error', 'a span that is not the last of the model ends the route');
    // A copy: the chunk keeps it until it is sealed.
    chunk.outputs.push(bytesOf(out.data).slice());
    const hidden = { data: out.data, seqLen: out.seqLen };
    if (!chain.seal) {
      const rest = await next.forward(hidden, steps, { chunkFrom: chain.chunkFrom, seal: false }, opening);
      // null: a middle hop on a link, whose unsealed steps' tokens go from the last hop to the head.
      return { attestations: [], tokenIds: rest?.tokenIds ?? [] };
    }
    if (!opening && next.sealsBehindStep) {
      // The head over links: the step goes on first, this hop signs while the later hops run it,
      // and the chunk's seal follows it down the link (see RemoteStage.forwardThenSeal).
      const rest = await next.forwardThenSeal(hidden, steps, chain.chunkFrom, async () => {
        const signed = signChunk(this.core, entry, ctx, steps[1], await chain.prevHash, false);
        recordSealedChunk(this.core, entry, ctx, steps[1]);
        return signed;
      });
      return { attestations: [], tokenIds: rest.tokenIds, later: rest.later };
    }
    const { signed, hash } = signChunk(this.core, entry, ctx, steps[1], await chain.prevHash, false);
    const rest = await next.forward(hidden, steps, { chunkFrom: chain.chunkFrom, seal: true, prev: signed, prevHash: hash }, opening);
    if (!rest) throw new AgentError('internal_error', 'a sealing step was not answered');
    recordSealedChunk(this.core, entry, ctx, steps[1]);
    return { attestations: [signed, ...rest.attestations], tokenIds: rest.tokenIds };
  }

  /**
   * Seals the unsealed chunk, which ends at step `to`, without running a step (the job ended inside
   * it): signs it here and has every later hop sign it too.
   */
  async sealOnly(entry: SessionEntry, ctx: HopContext, to: number, prevHash: string | null, next: RemoteStage | null): Promise<SignedAttestation[]> {
    const chunk = entry.chunk;
    if (!chunk || to <= chunk.from) throw new AgentError('bad_frame', `job ${entry.jobId} has no open chunk to seal at step ${to} on this hop`);
    const { signed, hash } = signChunk(this.core, entry, ctx, to, prevHash, next === null);
    const rest = next ? await next.seal([chunk.from, to], signed, hash) : [];
    recordSealedChunk(this.core, entry, ctx, to);
    return [signed, ...rest];
  }
}
