/**
 * What the edge does about a failed or abandoned route attempt (generate.ts): blame (exclusion,
 * cooldown, failed observation, reputation and a dispute for a provable bad attestation) and the
 * signed cancel that stops the agents' work.
 *
 * @example
 * blameAttempt(deps, { jobId, modelId, route, failure, signed, excluded, candidates });
 * sendCancel(deps, route, signed, hash);
 */
import { cancelMessage, type CancelRequest } from '../../protocol/agent-api.js';
import { utf8 } from '../../protocol/bytes.js';
import { signBytes } from '../../protocol/keys.js';
import type { SignedTicket } from '../../protocol/ticket.js';
import type { RouteCandidate } from '../../db/registry-contract.js';
import type { EdgeDeps } from '../deps.js';
import { coolDownLocally } from '../routing/candidates.js';
import type { ScoredRoute } from '../routing/score.js';
import type { AttemptFailure } from './attempt-failure.js';

/**
 * What a failed attempt costs whom: the blamed agents (or the whole route) are left out of this
 * request's later attempts and cooled down (in this isolate's candidates at once, in the
 * registry through waitUntil) and get a failed observation; a bad attestation also costs
 * reputation and, when provable, opens a dispute.
 */
export function blameAttempt(
  deps: EdgeDeps,
  input: { jobId: string; modelId: string; route: ScoredRoute; failure: AttemptFailure; signed: SignedTicket; excluded: Set<string>; candidates: RouteCandidate[] },
): void {
  const { route, failure, signed } = input;
  const now = deps.clock.now();
  const blamed = failure.agentId ? [failure.agentId] : route.hops.map((h) => h.agentId);
  const until = now + deps.config.cooldownMs;
  for (const agentId of blamed) {
    input.excluded.add(agentId);
    coolDownLocally(input.candidates, agentId, until);
  }
  // A silent multi-hop route: the head is blamed (it wrote the stream), but any hop behind it may
  // be the one that hung. The rest of this request avoids them all, so the failover does not wait
  // out another timeout through the same hop; only the blamed one is cooled down for others.
  const avoided = failure.kind === 'timeout' && route.hops.length > 1 ? route.hops.map((h) => h.agentId).filter((id) => !blamed.includes(id)) : [];
  for (const agentId of avoided) input.excluded.add(agentId);
  deps.log({ level: 'warn', msg: 'route attempt failed', jobId: input.jobId, kind: failure.kind, detail: failure.message, agents: blamed, ...(avoided.length ? { avoidedForThisRequest: avoided } : {}), ...(failure.url ? { url: failure.url } : {}) });
  const work: Promise<unknown>[] = [
    deps.store.recordObservations(blamed.map((agentId) => ({ agentId, modelId: input.modelId, location: deps.config.location, ok: false, at: now }))),
    ...blamed.map((agentId) => deps.store.setCooldown(agentId, until, failure.kind)),
  ];
  if (failure.kind === 'bad_attestation') {
    const evidence = { jobId: input.jobId, ticket: signed, ...(failure.evidence as object) };
    for (const agentId of blamed) {
      work.push(deps.store.adjustReputation(agentId, -deps.config.badAttestationPenalty, 'bad_attestation', evidence, now));
      // A signed wrong attestation is fraud evidence: open a dispute (settled by re-execution).
      if ((failure.evidence as { provable?: boolean }).provable) {
        work.push(deps.store.openDispute({ jobId: input.jobId, agentId, reason: 'bad_attestation', evidence, at: now }));
      }
    }
  }
  deps.waitUntil(Promise.all(work));
}

/** Tells the route's head agent, with a signed cancel, to stop the job's work (off the response path; failures ignored). */
export function sendCancel(deps: EdgeDeps, route: ScoredRoute, signed: SignedTicket, hash: string): void {
  const head = route.hops[0]!;
  const work = (async () => {
    const base: Omit<CancelRequest, 'signature'> = { jobId: signed.ticket.jobId, ticketHash: hash, issuedAt: deps.clock.now() };
    const signature = await signBytes(deps.signingKey.privateKey, utf8(cancelMessage(base)));
    const res = await deps.transport(new URL(`/v1/jobs/${encodeURIComponent(base.jobId)}/cancel`, head.endpoint).toString(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...base, signature }),
      signal: AbortSignal.timeout(5_000),
    });
    await res.body?.cancel().catch(() => undefined);
  })().catch(() => undefined);
  deps.waitUntil(work);
}
