/**
 * Client-side re-verification of a job: trust neither the edge nor the agents, only the keys
 * the registry publishes. For every attempt (failover) of the job, the ticket's signature is
 * checked against a published edge key and every attestation chunk is re-checked with the same
 * chain checks the edge runs (protocol/attestation-chain.ts), against the agents' keys from the
 * public registry view; then the tokens handed on by the attempts must be exactly the job's
 * tokens, and the response's summary, route and usage must agree with the chain. Last, the
 * record's `check`: a job a re-execution check found bad throws {@link JobFoundBadError},
 * whatever its chain says.
 *
 * What it cannot prove: that the prompt the ticket commits to (`inputHash`) is the caller's
 * prompt, or the text is the decoding of the tokens, unless the caller supplies a tokenizer
 * (`decode`); the edge tokenizes and decodes.
 *
 * @example
 * const verifier = new JobVerifier({ get: (path, query) => client.get(path, query) });
 * const report = await verifier.verify({ jobId, summary: completion.attestation, route: completion.route, usage: completion.usage });
 */
import { ChainVerifierBase } from '../../protocol/attestation-chain.js';
import type { SignedAttestation } from '../../protocol/attestation.js';
import type { AttestationSummary, JobAttestation, RouteSummary } from '../../protocol/api.js';
import { checkSignedTicket } from '../../protocol/ticket-signing.js';
import { AttestationError, JobFoundBadError, NotFoundError, isJobFoundBad } from './errors.js';
import { edgeKeysSchema, jobAttestationSchema, poolListSchema, signedChunkSchema } from './schemas.js';
import type { Usage, VerificationReport, VerifyOptions } from './types.js';

export interface JobVerifierDeps {
  /** GET a JSON document from the edge (the client's retrying transport). */
  get: (path: string, query?: Record<string, string | undefined>) => Promise<unknown>;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  /** How long published keys are trusted before being fetched again (ms, default 60 s). */
  keyTtlMs?: number;
  /** Pages of 100 pools read at most when looking for agents' keys (default 50). */
  maxPoolPages?: number;
}

export interface VerifyInput {
  jobId: string;
  summary?: AttestationSummary | null;
  route?: RouteSummary | null;
  usage?: Usage | null;
  /** The completion text returned to the caller (checked only with `decode`). */
  text?: string | null;
}

const POOL_PAGE = 100;

/** The edge's chain checks (protocol/attestation-chain.ts), each chunk read with the SDK's schema. */
class ChainVerifier extends ChainVerifierBase {
  protected override readChunk(input: unknown): SignedAttestation[] | null {
    const parsed = signedChunkSchema.safeParse(input);
    return parsed.success ? parsed.data : null;
  }
}

export class JobVerifier {
  private readonly deps: Required<Pick<JobVerifierDeps, 'get' | 'sleep' | 'now' | 'keyTtlMs' | 'maxPoolPages'>>;
  private edgeKeys: { at: number; keys: Map<string, string> } | null = null;
  private readonly agentKeys = new Map<string, { at: number; key: string }>();

  constructor(deps: JobVerifierDeps) {
    this.deps = {
      get: deps.get,
      sleep: deps.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
      now: deps.now ?? (() => Date.now()),
      keyTtlMs: deps.keyTtlMs ?? 60_000,
      maxPoolPages: deps.maxPoolPages ?? 50,
    };
  }

  /**
   * Throws {@link AttestationError} unless every check passes; failing to fetch what the checks
   * need (record, keys) is an AttestationError too ('unavailable', the cause attached): fail closed.
   */
  async verify(input: VerifyInput, options: VerifyOptions = {}): Promise<VerificationReport> {
    try {
      return await this.check(input, options);
    } catch (err) {
      if (err instanceof AttestationError || err instanceof JobFoundBadError) throw err;
      const why = err instanceof Error ? err.message : String(err);
      throw new AttestationError('unavailable', `could not fetch what verification needs: ${why}`, input.jobId, {}, { cause: err });
    }
  }

  private async check(input: VerifyInput, options: VerifyOptions): Promise<VerificationReport> {
    const { jobId } = input;
    const fail = (reason: ConstructorParameters<typeof AttestationError>[0], detail: string, ctx?: ConstructorParameters<typeof AttestationError>[3]) =>
      new AttestationError(reason, detail, jobId, ctx);

    const job = await this.fetchJob(jobId, options.recordWaitMs ?? 5_000);
    if (job.job_id !== jobId) throw fail('summary_mismatch', `record is for job ${job.job_id}`);
    if (job.attempts.length === 0) throw fail('malformed_record', 'the job has no attempts');

    const edgeKeys = options.edgeKeys ? new Map(Object.entries(options.edgeKeys)) : await this.publishedEdgeKeys();
    const needed = new Set<string>();
    for (const a of job.attempts) if (a.chunks.length > 0) for (const hop of a.ticket.ticket.route) needed.add(hop.agentId);
    const pinned = options.agentKeys ?? {};
    const agentKeys = await this.lookupAgentKeys([...needed].filter((id) => !Object.hasOwn(pinned, id)), input.route);
    for (const [id, key] of Object.entries(pinned)) agentKeys.set(id, key);

    const handed: number[] = [];
    let chunks = 0;
    let stopped = false;
    let chainHead: string | null = null;
    let lastTicketHash = '';
    let promptTokens: number | null = null;
    const agents = new Set<string>();
    for (let i = 0; i < job.attempts.length; i++) {
      const attempt = job.attempts[i]!;
      const { ticket } = attempt.ticket;
      const ctx = { attempt: i };
      const expectedJobId = i === 0 ? jobId : `${jobId}.${i + 1}`;
      if (ticket.jobId !== expectedJobId) throw fail('ticket_mismatch', `attempt ${i + 1} ticket is for ${ticket.jobId}`, ctx);
      if (ticket.modelId !== job.model_id) throw fail('ticket_mismatch', `attempt ${i + 1} ticket names another model`, ctx);
      if (promptTokens !== null && ticket.promptTokens !== promptTokens) throw fail('ticket_mismatch', 'attempts disagree on the prompt length', ctx);
      promptTokens = ticket.promptTokens;
      const edgeKey = edgeKeys.get(ticket.edgeKeyId);
      if (!edgeKey) throw fail('unknown_edge_key', `ticket signed by unpublished edge key ${ticket.edgeKeyId}`, ctx);
      // The record's parse checked the ticket's shape. Validity is judged at issue time: the
      // ticket expired long ago, and that is fine now.
      const check = await checkSignedTicket(attempt.ticket, edgeKey, ticket.issuedAt);
      if (!check.ok) throw fail('bad_ticket_signature', `attempt ${i + 1} ticket: ${check.reason}`, ctx);
      lastTicketHash = check.hash;
      if (stopped && attempt.chunks.length > 0) throw fail('wrong_prefix', 'an attempt continued after the answer ended', ctx);
      if (ticket.prefixTokens !== handed.length) {
        throw fail('wrong_prefix', `attempt ${i + 1} resumes after ${ticket.prefixTokens} tokens, ${handed.length} were handed on`, ctx);
      }
      const verifier = new ChainVerifier({ ticket, ticketHash: check.hash, numLayers: job.num_layers, keys: agentKeys });
      chainHead = null;
      for (const chunk of attempt.chunks) {
        const r = await verifier.verifyChunk(chunk);
        if (!r.ok) {
          throw fail(r.reason, `attempt ${i + 1}: ${r.detail}`, {
            attempt: i,
            ...(r.agentId !== undefined ? { agentId: r.agentId } : {}),
            ...(r.hop !== undefined ? { hop: r.hop } : {}),
          });
        }
        chunks++;
        chainHead = r.lastHash;
        if (stopped) throw fail('wrong_prefix', 'chunks continue after the stop token', ctx);
        // The edge hands on tokens up to (not including) a stop token, capped at maxTokens.
        for (const id of r.tokenIds) {
          if (ticket.stopTokenIds.includes(id)) {
            stopped = true;
            break;
          }
          if (handed.length >= ticket.limits.maxTokens) break;
          handed.push(id);
        }
      }
      if (attempt.chunks.length > 0) for (const hop of ticket.route) agents.add(hop.agentId);
    }

    if (handed.length !== job.token_ids.length || handed.some((t, i) => t !== job.token_ids[i])) {
      throw fail('token_mismatch', `the record lists ${job.token_ids.length} tokens, the chains attest ${handed.length} different ones`);
    }
    const last = job.attempts[job.attempts.length - 1]!;
    if (input.summary) {
      const s = input.summary;
      if (s.job_id !== jobId || s.model_id !== job.model_id) throw fail('summary_mismatch', 'summary names another job or model');
      if (s.chunks !== chunks) throw fail('summary_mismatch', `summary counts ${s.chunks} chunks, the chains hold ${chunks}`);
      if (s.chain_head !== chainHead) throw fail('summary_mismatch', 'summary chain head is not the verified chain head');
      if (s.ticket_hash && s.ticket_hash !== lastTicketHash) throw fail('summary_mismatch', 'summary ticket hash is not the final ticket');
    }
    if (input.route) {
      const hops = last.ticket.ticket.route;
      const r = input.route;
      const same = r.hops.length === hops.length && r.hops.every((h, i) => h.agent_id === hops[i]!.agentId && h.layers[0] === hops[i]!.layers[0] && h.layers[1] === hops[i]!.layers[1]);
      if (!same) throw fail('route_mismatch', 'the route in the response is not the route of the final ticket');
      if (r.attempts !== job.attempts.length) throw fail('route_mismatch', `route says ${r.attempts} attempts, the record holds ${job.attempts.length}`);
    }
    if (input.usage) {
      if (input.usage.completion_tokens !== handed.length) {
        throw fail('usage_mismatch', `usage bills ${input.usage.completion_tokens} completion tokens, ${handed.length} were attested`);
      }
      if (promptTokens !== null && input.usage.prompt_tokens !== promptTokens) {
        throw fail('usage_mismatch', `usage bills ${input.usage.prompt_tokens} prompt tokens, the ticket holds ${promptTokens}`);
      }
    }
    if (options.decode && typeof input.text === 'string') {
      const decoded = options.decode(handed);
      if (!decoded.startsWith(input.text)) throw fail('text_mismatch', 'the text is not the decoding of the attested tokens');
    }
    // The chain checks out; a re-execution check may still have found the computation wrong.
    if (job.check && isJobFoundBad(job.check)) throw new JobFoundBadError(jobId, job.check);
    return {
      jobId,
      verified: true,
      attempts: job.attempts.length,
      chunks,
      tokenIds: handed,
      chainHead,
      edgeKeyId: last.ticket.ticket.edgeKeyId,
      agents: [...agents],
      ...(job.check ? { check: job.check } : {}),
    };
  }

  /** The job record is written just after the answer: a 404 is retried for up to `waitMs`. */
  private async fetchJob(jobId: string, waitMs: number): Promise<JobAttestation> {
    const started = this.deps.now();
    let delay = 100;
    for (;;) {
      try {
        const raw = await this.deps.get(`/v1/jobs/${encodeURIComponent(jobId)}/attestation`);
        const parsed = jobAttestationSchema.safeParse(raw);
        if (!parsed.success) throw new AttestationError('malformed_record', 'the attestation record does not match the schema', jobId);
        return parsed.data;
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
        if (this.deps.now() - started >= waitMs) throw new AttestationError('unavailable', 'the edge has no attestation record for the job', jobId);
        await this.deps.sleep(delay);
        delay = Math.min(delay * 2, 1_000);
      }
    }
  }

  private async publishedEdgeKeys(): Promise<Map<string, string>> {
    const now = this.deps.now();
    if (this.edgeKeys && now - this.edgeKeys.at < this.deps.keyTtlMs) return this.edgeKeys.keys;
    const parsed = edgeKeysSchema.safeParse(await this.deps.get('/v1/edge/keys'));
    if (!parsed.success) throw new AttestationError('malformed_record', 'the edge key list does not match the schema', null);
    const keys = new Map(parsed.data.keys.map((k) => [k.id, k.public_key]));
    this.edgeKeys = { at: now, keys };
    return keys;
  }

  /**
   * Keys of the given agents from the public registry view (GET /v1/pools), cached. Pages the
   * regions the route names first, then every pool, bounded by maxPoolPages.
   */
  private async lookupAgentKeys(ids: readonly string[], route?: RouteSummary | null): Promise<Map<string, string>> {
    const now = this.deps.now();
    const out = new Map<string, string>();
    const missing = new Set<string>();
    for (const id of ids) {
      const hit = this.agentKeys.get(id);
      if (hit && now - hit.at < this.deps.keyTtlMs) out.set(id, hit.key);
      else missing.add(id);
    }
    if (missing.size === 0) return out;
    const regions = [...new Set((route?.hops ?? []).map((h) => h.region))];
    let pages = 0;
    for (const region of [...regions, undefined]) {
      let after: string | undefined;
      while (missing.size > 0 && pages < this.deps.maxPoolPages) {
        pages++;
        const parsed = poolListSchema.safeParse(await this.deps.get('/v1/pools', { limit: String(POOL_PAGE), region, after }));
        if (!parsed.success) throw new AttestationError('malformed_record', 'the pool list does not match the schema', null);
        for (const pool of parsed.data.data) {
          for (const agent of pool.agents) {
            this.agentKeys.set(agent.id, { at: now, key: agent.public_key });
            if (missing.delete(agent.id)) out.set(agent.id, agent.public_key);
          }
        }
        const page = parsed.data.data;
        if (page.length < POOL_PAGE) break;
        after = page[page.length - 1]!.id;
      }
      if (missing.size === 0) break;
    }
    // Agents still missing fail in ChainVerifier as 'unknown_key'.
    return out;
  }
}
