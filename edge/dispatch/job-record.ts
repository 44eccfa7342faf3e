/**
 * What a generation leaves in the registry (generate.ts): each successful attempt's timings as
 * observations of its hops, and the job's end (charge, finish record, sampled check). All off
 * the response path, through waitUntil.
 *
 * @example
 * observeSuccess(deps, req.model, route, timing);
 * const record = recordJobEnd(deps, { req, reason, attempts, tokens, costMicroUsd, startRecord });
 */
import type { JobAttemptRecord, ModelRecord, Observation } from '../../db/registry-contract.js';
import type { EdgeDeps } from '../deps.js';
import type { ScoredRoute } from '../routing/score.js';
import { checkFinishedJob } from '../checks/run-checks.js';
import type { GenerationRequest } from './generate.js';

/** Timing of a route attempt, for its observations. */
export interface AttemptTiming {
  startedAt: number;
  firstTokenAt: number | null;
  tokens: number;
  /** Whether its success was recorded already (once per attempt). */
  observed: boolean;
}

/**
 * Records a successful attempt's timings for each hop of its route (once per attempt): time to
 * first token and per-token time, shared among the hops by their share of the layers.
 */
export function observeSuccess(deps: EdgeDeps, model: Pick<ModelRecord, 'id' | 'numLayers'>, route: ScoredRoute, timing: AttemptTiming): void {
  const now = deps.clock.now();
  const { firstTokenAt, startedAt, tokens, observed } = timing;
  if (firstTokenAt === null || observed) return;
  timing.observed = true;
  const ttft = firstTokenAt - startedAt;
  const perToken = tokens > 1 ? (now - firstTokenAt) / (tokens - 1) : undefined;
  const obs: Observation[] = route.hops.map((h) => {
    // A route's timings are shared among its hops by their share of the layers (exact for one hop).
    const share = (h.layers[1] - h.layers[0]) / model.numLayers;
    return {
      agentId: h.agentId,
      modelId: model.id,
      location: deps.config.location,
      ttftMs: ttft * share,
      ...(perToken !== undefined ? { perTokenMs: perToken * share } : {}),
      ok: true,
      at: now,
    };
  });
  deps.waitUntil(deps.store.recordObservations(obs));
}

/**
 * The job's end: its cost charged to the key (nothing for a failed job), the finish record
 * (after the start record, whatever became of it), and, for a completed job with checks on, its
 * sampled re-execution check once the record is written. Returns the record's promise.
 */
export function recordJobEnd(
  deps: EdgeDeps,
  input: {
    req: GenerationRequest;
    reason: 'stop' | 'length' | 'cancelled' | 'error' | null;
    attempts: JobAttemptRecord[];
    tokens: number[];
    costMicroUsd: () => number;
    startRecord: Promise<unknown>;
  },
): Promise<unknown> {
  const { req, reason } = input;
  const status = reason === 'stop' || reason === 'length' ? 'completed' : reason === 'cancelled' ? 'cancelled' : 'failed';
  const cost = status === 'failed' ? 0 : input.costMicroUsd();
  if (cost > 0) {
    // The cached key record sees the spend at once; the registry through waitUntil.
    req.auth.key.spentMicroUsd += cost;
    deps.waitUntil(deps.store.chargeApiKey(req.auth.apiKeyId, cost));
  }
  const finish = {
    id: req.jobId,
    status,
    finishReason: reason,
    attempts: input.attempts,
    tokenIds: input.tokens,
    promptTokens: req.promptIds.length,
    completionTokens: input.tokens.length,
    costMicroUsd: cost,
    finishedAt: deps.clock.now(),
  } as const;
  // After the start record, whatever became of it.
  const record = input.startRecord.catch(() => undefined).then(() => deps.store.recordJobFinish(finish));
  deps.waitUntil(record);
  if (status === 'completed' && deps.checks?.key) {
    // Sampled re-execution check, once the job row (with its attestation chain) is written.
    const job = { jobId: req.jobId, modelId: req.model.id, numLayers: req.model.numLayers, promptIds: req.promptIds, tokenIds: [...input.tokens], attempts: input.attempts };
    deps.waitUntil(record.then(() => checkFinishedJob(deps, job)));
  }
  return record;
}
