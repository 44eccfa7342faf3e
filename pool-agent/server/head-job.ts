/**
 * The head hop's job loop (`POST /v1/jobs`): checks the job request against its ticket, opens the
 * head's session and the stage to the next hop, then generates: prefill, one decode step after
 * another (step-runner.ts), sampling by absolute step, attestation chunks sealed as the ticket's
 * chunking policy says, each chunk streamed as an NDJSON event once every hop attested it. Also
 * cancels a running job, and stops them all when the agent drains.
 *
 * @example
 * const job = await headJobs.prepare(body);          // throws AgentError before any byte is sent
 * for await (const ev of job.events(signal)) write(ev);
 */
import { jobRequestSchema, type JobEvent } from '../../protocol/agent-api.js';
import { attestationBytes, type SignedAttestation } from '../../protocol/attestation.js';
import { encodeTokenIds, sha256Hex } from '../../protocol/bytes.js';
import type { ChunkingPolicy, JobTicket, SignedTicket } from '../../protocol/ticket.js';
import { hopContext } from './chunk-attestation.js';
import type { CoreContext } from './core-context.js';
import { AgentError, fail, toAgentError } from './errors.js';
import { RemoteStage } from './remote-stage.js';
import type { SessionEntry } from './session-manager.js';
import type { StepChain, StepResult, StepRunner } from './step-runner.js';

interface RunningJob {
  jobId: string;
  ticketHash: string;
  controller: AbortController;
  done: Promise<void>;
}

export interface PreparedJob {
  ticket: JobTicket;
  ticketHash: string;
  /** NDJSON events: one `chunk` per attested chunk of steps, then `done` or `error`. Frees the session at the end. */
  events(signal?: AbortSignal): AsyncGenerator<JobEvent>;
}

/**
 * Whether the head seals its unsealed chunk with this step: always without a policy (one chunk per
 * step), else once it holds `steps` >= maxSteps or has been unsealed for `elapsedMs` >= maxDelayMs.
 */
export function sealsChunk(policy: ChunkingPolicy | undefined, steps: number, elapsedMs: number): boolean {
  return !policy || steps >= policy.maxSteps || elapsedMs >= policy.maxDelayMs;
}

/** The jobs this agent runs as the head hop. */
export class HeadJobs {
  private readonly jobs = new Map<string, RunningJob>();

  constructor(
    private readonly core: CoreContext,
    private readonly steps: StepRunner,
  ) {}

  /** Jobs running now. */
  get size(): number {
    return this.jobs.size;
  }

  /** Validates a job request and opens its session; throws AgentError (a real HTTP status). */
  async prepare(body: unknown): Promise<PreparedJob> {
    const core = this.core;
    if (core.draining) fail('shutdown', 'this agent is shutting down', 5);
    const parsed = jobRequestSchema.safeParse(body);
    if (!parsed.success) fail('invalid_request', `invalid job request: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ').slice(0, 500)}`);
    const req = parsed.data;
    const { ticket, hash } = await core.tickets.check(req.signedTicket, 0, false);
    if (req.promptIds.length !== ticket.promptTokens || req.prefixIds.length !== ticket.prefixTokens) {
      fail('input_mismatch', `ticket says ${ticket.promptTokens} prompt + ${ticket.prefixTokens} prefix tokens, got ${req.promptIds.length} + ${req.prefixIds.length}`);
    }
    const inputIds = [...req.promptIds, ...req.prefixIds];
    if ((await sha256Hex(encodeTokenIds(inputIds))) !== ticket.inputHash) fail('input_mismatch', 'prompt and prefix do not hash to the ticket inputHash');
    const vocab = core.span.manifest.architecture.vocabSize;
    if (inputIds.some((t) => t >= vocab)) fail('invalid_request', `token ids must be below the vocabulary size ${vocab}`);
    core.tickets.claimNonce(ticket);
    const entry = core.openSession(ticket, hash, 0);
    entry.ticket = ticket;
    const signedTicket = req.signedTicket as SignedTicket;
    let next: RemoteStage | null = null;
    try {
      const transport = core.hopTransport;
      next =
        ticket.route.length > 1
          ? new RemoteStage({
              signedTicket,
              ticketHash: hash,
              hop: 1,
              timeoutMs: core.limits.hopTimeoutMs,
              transport,
              awaitTokens: true,
              sign: (bytes) => core.crypto.sign(bytes),
              onLink: core.countLink,
              ...(core.fetch && transport === 'post' ? { fetch: core.fetch } : {}),
            })
          : null;
      // A link's handshake overlaps this hop's prefill.
      next?.connect();
    } catch (err) {
      core.sessions.close(ticket.jobId, 'error');
      throw err;
    }
    return { ticket, ticketHash: hash, events: (signal) => this.run(ticket, hash, inputIds, entry, next, signal) };
  }

  private async *run(ticket: JobTicket, hash: string, inputIds: number[], entry: SessionEntry, next: RemoteStage | null, signal?: AbortSignal): AsyncGenerator<JobEvent> {
    const controller = new AbortController();
    const onOuterAbort = () => controller.abort(signal?.reason ?? 'disconnect');
    signal?.addEventListener('abort', onOuterAbort, { once: true });
    let finish!: () => void;
    const running: RunningJob = { jobId: ticket.jobId, ticketHash: hash, controller, done: new Promise((r) => (finish = r)) };
    this.jobs.set(ticket.jobId, running);
    entry.onClose = (reason) => controller.abort(reason);
    const core = this.core;
    const ctx = hopContext(core, ticket, hash, 0);
    const started = core.clock();
    const stop = new Set(ticket.stopTokenIds);
    let outcome = 'error';
    try {
      let step = ticket.prefixTokens;
      let fed = inputIds;
      // Hash of the last hop's attestation of the previous chunk: the next chunk chains to it (a
      // promise while that chunk's attestations are still coming back up the chain).
      let prevHash: string | null | Promise<string | null> = null;
      let first = true;
      // The unsealed chunk: its first step, when it began, and the tokens it holds so far.
      let chunkFrom = step;
      let chunkStartedAt = started;
      let chunkTokens: number[] = [];
      let lastStepMs = 0;
      // A sealed chunk whose attestations are on their way back while the next step runs (over
      // links, the token of a sealing step comes first and a seal frame follows the step).
      let pending: { from: number; to: number; tokens: number[]; attestations: Promise<SignedAttestation[]> } | null = null;
      const chunkEvent = (attestations: SignedAttestation[], from: number, to: number, tokens: number[]): JobEvent => {
        const lastAtt = attestations[attestations.length - 1]!;
        const attested = lastAtt.att.outputTokenIds ?? [];
        if (attested.length !== tokens.length || attested.some((t, i) => t !== tokens[i])) {
          throw new AgentError('upstream_error', `the last hop attests other tokens than it returned for steps [${from}, ${to})`, { agentId: lastAtt.att.agentId });
        }
        return { type: 'chunk', steps: [from, to], tokenIds: tokens, attestations };
      };
      const sealed = (attestations: SignedAttestation[], to: number): JobEvent => {
        const ev = chunkEvent(attestations, chunkFrom, to, chunkTokens);
        prevHash = core.crypto.sha256Hex(attestationBytes(attestations[attestations.length - 1]!.att));
        chunkTokens = [];
        return ev;
      };
      const settle = async (): Promise<JobEvent> => {
        const p = pending!;
        pending = null;
        return chunkEvent(await p.attestations, p.from, p.to, p.tokens);
      };
      core.log.info('job started', { jobId: ticket.jobId, hops: ticket.route.length, promptTokens: ticket.promptTokens, prefixTokens: ticket.prefixTokens });
      while (step < ticket.limits.maxTokens) {
        if (controller.signal.aborted) break;
        if (core.clock() > ticket.limits.deadline) throw new AgentError('deadline', `job deadline passed at step ${step}`);
        const t0 = core.clock();
        const steps: [number, number] = [step, step + 1];
        if (chunkTokens.length === 0) {
          chunkFrom = step;
          chunkStartedAt = t0;
        }
        // The prefill is a chunk of its own (first token as soon as possible); later chunks close
        // on the ticket's policy, estimating this step to take as long as the last one.
        const seal = first || step + 1 >= ticket.limits.maxTokens || sealsChunk(ticket.chunking, step + 1 - chunkFrom, t0 - chunkStartedAt + lastStepMs);
        const chain: StepChain = { chunkFrom, seal, prevHash };
        const running: Promise<StepResult> = core.sessions.withSession(ticket.jobId, hash, (e) => this.steps.runStep(e, ctx, { kind: 'tokens', ids: Int32Array.from(fed) }, null, steps, chain, next, first));
        running.catch(() => undefined); // awaited below
        // The previous chunk's attestations come in while this step runs: send it on meanwhile.
        if (pending) yield await settle();
        const result: StepResult = await running;
        const token = result.tokenIds[0]!;
        chunkTokens.push(token);
        lastStepMs = core.clock() - t0;
        core.metrics.tokens.inc({ role: 'head' }, 1);
        core.metrics.stepDuration.observe(lastStepMs / 1000);
        if (controller.signal.aborted && controller.signal.reason === 'disconnect') break;
        const stopped = stop.has(token);
        if (seal && result.later) {
          pending = { from: chunkFrom, to: step + 1, tokens: chunkTokens, attestations: result.later };
          const chained: Promise<string> = result.later.then((a: SignedAttestation[]) => core.crypto.sha256Hex(attestationBytes(a[a.length - 1]!.att)));
          chained.catch(() => undefined); // the chunk's own settle reports a failure
          prevHash = chained;
          chunkTokens = [];
        } else if (seal) yield sealed(result.attestations, step + 1);
        if (pending && (stopped || step + 1 >= ticket.limits.maxTokens)) yield await settle();
        if (!seal && stopped) {
          const chainTo = await prevHash;
          yield sealed(await core.sessions.withSession(ticket.jobId, hash, (e) => this.steps.sealOnly(e, ctx, step + 1, chainTo, next)), step + 1);
        }
        if (stopped) {
          outcome = 'stop';
          yield { type: 'done', finishReason: 'stop' };
          return;
        }
        fed = [token];
        step++;
        first = false;
      }
      // A chunk the whole route sealed still goes out, unless nobody is listening any more.
      if (pending && controller.signal.reason !== 'disconnect') yield await settle();
      if (chunkTokens.length > 0 && controller.signal.reason === 'shutdown') {
        // Hand back what was computed: the edge resumes the job after the last attested token.
        try {
          const chainTo = await prevHash;
          yield sealed(await core.sessions.withSession(ticket.jobId, hash, (e) => this.steps.sealOnly(e, ctx, step, chainTo, next)), step);
        } catch (err) {
          core.log.warn('could not seal the open chunk at shutdown', { jobId: ticket.jobId, detail: (err as Error).message });
        }
      }
      const reason = controller.signal.aborted ? String(controller.signal.reason) : null;
      if (reason === 'shutdown') {
        outcome = 'shutdown';
        core.metrics.errors.inc({ code: 'shutdown' });
        yield { type: 'error', code: 'shutdown', message: 'the agent is shutting down; resume the job elsewhere', agentId: core.agentId };
        return;
      }
      if (reason === 'idle') throw new AgentError('deadline', 'the session expired');
      if (reason !== null) {
        outcome = 'cancelled';
        if (reason !== 'disconnect') yield { type: 'done', finishReason: 'cancelled' };
        return;
      }
      outcome = 'length';
      yield { type: 'done', finishReason: 'length' };
    } catch (err) {
      const e = toAgentError(err);
      if (e.code === 'internal_error') core.log.error('job failed', { jobId: ticket.jobId, error: err as Error });
      else core.log.warn('job failed', { jobId: ticket.jobId, code: e.code, detail: e.message });
      core.metrics.errors.inc({ code: e.code });
      outcome = 'error';
      yield { type: 'error', code: e.code, message: e.message.slice(0, 2000), agentId: e.agentId ?? core.agentId, ...(e.evidence ? { evidence: e.evidence } : {}) };
    } finally {
      signal?.removeEventListener('abort', onOuterAbort);
      entry.onClose = undefined;
      core.sessions.close(ticket.jobId, 'done');
      if (next) void next.close();
      this.jobs.delete(ticket.jobId);
      core.metrics.jobs.inc({ outcome });
      core.metrics.jobDuration.observe((core.clock() - started) / 1000);
      core.log.info('job finished', { jobId: ticket.jobId, outcome, ms: core.clock() - started });
      finish();
    }
  }

  /** Stops a running job whose ticket hashes to `ticketHash` (its stream ends with done/cancelled); false when none runs. */
  cancel(jobId: string, ticketHash: string): boolean {
    const job = this.jobs.get(jobId);
    if (!job || job.ticketHash !== ticketHash) return false;
    job.controller.abort('cancel');
    this.core.log.info('job cancelled', { jobId });
    return true;
  }

  /** Ends every running job with `reason` (their streams say so) and waits until each has finished. */
  async stopAll(reason: string): Promise<void> {
    if (this.jobs.size === 0) return;
    const running = [...this.jobs.values()];
    for (const j of running) j.controller.abort(reason);
    await Promise.all(running.map((j) => j.done));
  }
}
