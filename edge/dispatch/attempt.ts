/**
 * One route attempt of a generation (generate.ts): the job request to the route's head agent,
 * its NDJSON events read with the first-token and inter-token timeouts, and every chunk's
 * attestation chain verified before its tokens are yielded. Any failure is an `AttemptFailure`
 * naming whom it blames: the signer of a validly signed wrong attestation (provable), a hop whose
 * forwarding its successor proved bad (forward-blame.ts), else the head agent, which wrote the
 * stream.
 *
 * @example
 * for await (const ev of streamAttempt({ deps, req, route, signed, hash, attempt, ctl, prefixIds, onStart, onChunk })) { ... }
 */
import { attestationBytes, ChainVerifier, type SignedAttestation } from '../../protocol/attestation.js';
import type { JobRequest } from '../../protocol/agent-api.js';
import { verifyBytes } from '../../protocol/keys.js';
import type { SignedTicket } from '../../protocol/ticket.js';
import type { JobAttemptRecord, RouteCandidate } from '../../db/registry-contract.js';
import type { EdgeDeps } from '../deps.js';
import type { ScoredRoute } from '../routing/score.js';
import { AttemptFailure, transportError } from './attempt-failure.js';
import { verifyForwardEvidence } from './forward-blame.js';
import type { GenerationEvent, GenerationRequest } from './generate.js';
import { readJobEvents, StreamFailure } from './ndjson.js';

/** Whether `att` carries a valid signature of `hop`'s registered key (then its content is the hop's word). */
async function signedBy(att: SignedAttestation | undefined, hop: RouteCandidate | undefined): Promise<boolean> {
  if (!att || !hop || att.att.agentId !== hop.agentId) return false;
  try {
    return await verifyBytes(hop.publicKey, att.sig, attestationBytes(att.att));
  } catch {
    return false;
  }
}

/** What one attempt runs on, and what it tells its generation as it goes. */
export interface AttemptInput {
  deps: EdgeDeps;
  req: GenerationRequest;
  route: ScoredRoute;
  signed: SignedTicket;
  hash: string;
  /** The attempt's record: verified chunks are appended to it. */
  attempt: JobAttemptRecord;
  /** Aborts the request to the head agent (client gone, first-token timeout). */
  ctl: AbortController;
  /** Tokens already handed on (the resumed prefix). */
  prefixIds: readonly number[];
  /** The request to the head agent is about to be sent. */
  onStart(startedAt: number): void;
  /** A chunk was verified: the chain's last hash, its tokens, when. */
  onChunk(chunk: { lastHash: string; tokens: number; at: number }): void;
}

/** Streams one attempt: yields verified token batches, then done. Throws AttemptFailure. */
export async function* streamAttempt(input: AttemptInput): AsyncGenerator<GenerationEvent> {
  const { deps, req, route, signed, hash, attempt, ctl } = input;
  const head = route.hops[0]!;
  const body: JobRequest = { signedTicket: signed, promptIds: req.promptIds, prefixIds: [...input.prefixIds] };
  const startedAt = deps.clock.now();
  input.onStart(startedAt);
  const firstTimer = setTimeout(() => ctl.abort(), deps.config.firstTokenTimeoutMs);
  const url = new URL('/v1/jobs', head.endpoint).toString();
  let res: Response;
  try {
    res = await deps.transport(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify(body),
      signal: ctl.signal,
    });
  } catch (err) {
    clearTimeout(firstTimer);
    if (req.signal.aborted) throw new DOMException('client went away', 'AbortError');
    const timedOut = deps.clock.now() - startedAt >= deps.config.firstTokenTimeoutMs;
    const detail = timedOut ? 'timed out' : `unreachable: ${transportError(err)}`;
    throw new AttemptFailure(timedOut ? 'timeout' : 'unreachable', `head agent ${detail}`, head.agentId, undefined, url);
  }
  clearTimeout(firstTimer);
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => undefined);
    throw new AttemptFailure('http_status', `head agent answered ${res.status}`, head.agentId, undefined, url);
  }
  const keys = new Map(route.hops.map((h) => [h.agentId, h.publicKey]));
  const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: req.model.numLayers, keys });
  let firstTokenAt: number | null = null;
  const timeout = () => (firstTokenAt === null ? deps.config.firstTokenTimeoutMs : deps.config.interTokenTimeoutMs);
  try {
    for await (const ev of readJobEvents(res.body, timeout)) {
      if (ev.type === 'error') {
        const reporter = ev.agentId && keys.has(ev.agentId) ? ev.agentId : head.agentId;
        if (ev.evidence !== undefined) {
          // A hop refused bytes and says its predecessor signed them: blame that hop only once
          // its own signatures prove it (forward-blame.ts), as for a signed wrong attestation.
          const proof = await verifyForwardEvidence(ev.evidence, { ticket: signed.ticket, ticketHash: hash, hops: route.hops, hiddenSize: req.model.manifest.architecture.hiddenSize });
          if (proof.ok) {
            throw new AttemptFailure('bad_attestation', `bad_forward: ${proof.detail}`, proof.agentId, {
              reason: 'bad_forward',
              detail: proof.detail,
              hop: proof.hop,
              fault: proof.fault,
              provable: true,
              reportedBy: reporter,
              forward: ev.evidence,
            });
          }
          // Unproven, the refusal is what it was before evidence existed: the reporter's word.
          deps.log({ level: 'warn', msg: 'forward evidence refused', jobId: req.jobId, agentId: reporter, detail: proof.why });
        }
        throw new AttemptFailure('agent_error', `agent error ${ev.code}`, reporter);
      }
      if (ev.type === 'done') {
        if (ev.finishReason === 'cancelled') throw new AttemptFailure('agent_error', 'agent cancelled the job', head.agentId);
        // 'length' from the agent means the ticket's maxTokens was reached.
        yield { type: 'done', reason: ev.finishReason === 'stop' ? 'stop' : 'length' };
        return;
      }
      const check = await verifier.verifyChunk(ev.attestations);
      if (!check.ok) {
        // A validly signed but wrong attestation is the signer's doing (provable, with the
        // evidence) — but only if it is this chunk's: bound to this ticket and these steps.
        // A missing or invalid signature, or a genuine signature replayed from another ticket
        // or another chunk, proves nothing about the named hop: the head agent relayed those
        // bytes, so it carries the blame (otherwise a head could frame an honest later hop).
        const named = check.hop !== undefined ? ev.attestations[check.hop] : undefined;
        const thisChunk =
          named !== undefined &&
          named.att.ticketHash === hash &&
          named.att.jobId === signed.ticket.jobId &&
          named.att.steps[0] === ev.steps[0] &&
          named.att.steps[1] === ev.steps[1];
        const signedByHop = thisChunk && (await signedBy(named, route.hops[check.hop!]));
        const blamed = signedByHop ? route.hops[check.hop!]!.agentId : head.agentId;
        throw new AttemptFailure('bad_attestation', `${check.reason}: ${check.detail}`, blamed, {
          reason: check.reason,
          detail: check.detail,
          hop: check.hop,
          provable: signedByHop,
          chunk: ev.attestations,
        });
      }
      if (
        check.steps[0] !== ev.steps[0] ||
        check.steps[1] !== ev.steps[1] ||
        check.tokenIds.length !== ev.tokenIds.length ||
        check.tokenIds.some((t, i) => t !== ev.tokenIds[i])
      ) {
        // The head agent wrote the event: its tokens differ from what the chain attests.
        throw new AttemptFailure('bad_attestation', 'chunk tokens differ from the attested tokens', head.agentId, {
          reason: 'bad_tokens',
          provable: false,
          chunk: ev.attestations,
          tokenIds: ev.tokenIds,
        });
      }
      attempt.chunks.push(ev.attestations as SignedAttestation[]);
      const at = deps.clock.now();
      if (firstTokenAt === null) firstTokenAt = at;
      input.onChunk({ lastHash: check.lastHash, tokens: check.tokenIds.length, at });
      yield { type: 'tokens', ids: check.tokenIds };
    }
  } catch (err) {
    if (err instanceof StreamFailure) {
      if (req.signal.aborted) throw new DOMException('client went away', 'AbortError');
      if (err.kind === 'malformed' || err.kind === 'too_large') {
        // A complete line that is not a valid event is the head agent's doing (it wrote the
        // stream): treat it like an unverifiable attestation, so dropping signatures costs
        // reputation, without a provable claim.
        throw new AttemptFailure('bad_attestation', err.message, head.agentId, { reason: 'malformed', detail: err.message, provable: false });
      }
      throw new AttemptFailure(err.kind === 'timeout' ? 'timeout' : 'stream', err.message, head.agentId, undefined, url);
    }
    throw err;
  }
}
