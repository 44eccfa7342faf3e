/**
 * What the edge needs from the registry, with no database import: the Postgres implementation
 * (`db/registry-store.ts`, `createRegistryStore(sql)`) and the in-memory double
 * (`edge/store/memory.ts`, unit tests and benches) both implement `RegistryStore`. It lives with
 * the registry (db/) so the registry imports nothing of the edge; the edge depends on it.
 *
 * Conventions (every implementation follows them):
 * - Times are epoch milliseconds (`number`); absent times are `null`.
 * - Money is integer micro-USD (`1 USD = 1_000_000`). Prices are micro-USD per million tokens
 *   (the public API speaks USD per million tokens: `price = priceMicroUsdPerMTok / 1e6`).
 * - Layer spans are `[start, end)` over a model's layer blocks.
 * - Ids are opaque strings (UUIDs in Postgres); a model's id is its manifest hash (64 hex chars).
 * - Every list is bounded by an explicit `limit`; nothing here scans a whole table on the
 *   request path (plan for 100k agents: index candidates by model, status and region).
 * - Methods reject (throw) only on infrastructure failure; "not found" is `null`, and expected
 *   domain outcomes are returned values (e.g. `HeartbeatResult`).
 *
 * @example
 * const store: RegistryStore = createMemoryStore();
 * const key = await store.getApiKeyByPrefix('abcdefghijkl');
 * const candidates = await store.listRouteCandidates(modelId, { heartbeatAfter: now - 30_000, limit: 256 });
 */
import type { ApiKeyScope } from '../protocol/api-key.js';
import type { Manifest, ModelDtype } from '../protocol/manifest.js';
import type { Hardware } from '../protocol/owner-api.js';
import type { SignedTicket } from '../protocol/ticket.js';
import type { SignedAttestation } from '../protocol/attestation.js';
import type { CheckRequest } from '../protocol/check.js';
import type { ModelFileStore } from './model-files-contract.js';

export type { ModelFileInfo, ModelFileInput, ModelFileStore } from './model-files-contract.js';

// ---------------------------------------------------------------- API keys

export interface ApiKeyRecord {
  id: string;
  accountId: string;
  /** The 12-char prefix of `ln_<prefix>_<secret>` (clear text, unique). */
  prefix: string;
  /** Hex SHA-256 from `hashApiKey` (protocol/api-key.ts); the secret itself is never stored. */
  hash: string;
  scopes: ApiKeyScope[];
  /** Set when revoked; the edge refuses the key from then on (its key cache TTL is <= 5 s). */
  revokedAt: number | null;
  expiresAt: number | null;
  /** Requests per minute; null = unlimited. */
  requestsPerMinute: number | null;
  /** Prompt + completion tokens per minute; null = unlimited. */
  tokensPerMinute: number | null;
  /** Total spending allowed, micro-USD; null = unlimited. */
  budgetMicroUsd: number | null;
  /** Spent so far, micro-USD (charged when jobs finish). */
  spentMicroUsd: number;
  lastUsedAt: number | null;
}

export interface CreateApiKey {
  accountId: string;
  prefix: string;
  hash: string;
  scopes: ApiKeyScope[];
  requestsPerMinute?: number | null;
  tokensPerMinute?: number | null;
  budgetMicroUsd?: number | null;
  expiresAt?: number | null;
}

/** Per key and minute window (window start = floor(ms / 60_000) * 60_000). */
export interface UsageWindow {
  requests: number;
  tokens: number;
}

// ---------------------------------------------------------------- models

export interface ModelRecord {
  /** Manifest hash (`manifestHash(manifest)`). */
  id: string;
  /** Manifest name; unique among published models. */
  name: string;
  manifest: Manifest;
  numLayers: number;
  dtype: ModelDtype;
  /** Account that published it (null for models seeded by an operator). */
  publishedBy: string | null;
  createdAt: number;
}

export interface ModelSummary extends ModelRecord {
  /** Active agents with a fresh heartbeat holding some span of the model. */
  agents: number;
}

// ---------------------------------------------------------------- pools and agents

export type AgentStatus = 'active' | 'draining' | 'offline' | 'slashed' | 'deregistered';

export interface PoolRecord {
  id: string;
  ownerAccountId: string;
  name: string;
  region: string;
  latitude: number | null;
  longitude: number | null;
  /** Stake currently held (stakes minus slashes), micro-USD. */
  stakeMicroUsd: number;
  status: 'active' | 'suspended';
  createdAt: number;
}

export interface CreatePoolInput {
  ownerAccountId: string;
  name: string;
  region: string;
  latitude?: number | null;
  longitude?: number | null;
}

export interface SpanRecord {
  modelId: string;
  layers: [number, number];
}

export interface AgentRecord {
  id: string;
  poolId: string;
  ownerAccountId: string;
  endpoint: string;
  /** Raw Ed25519 public key, base64url (43 chars). */
  publicKey: string;
  hardware: Hardware;
  priceMicroUsdPerMTok: number;
  throughputTokensPerS: number;
  spans: SpanRecord[];
  status: AgentStatus;
  /** In [0, 1]; new agents start at 0.5. */
  reputation: number;
  /** Routing skips the agent until then (set after failures). */
  cooldownUntil: number | null;
  /** Why the cooldown ending at `cooldownUntil` was set (the failure kind); null when none was. */
  cooldownReason: string | null;
  /** Set by operators/disputes: routing scores it with a penalty (still usable when nothing else is). */
  probation: boolean;
  lastHeartbeatAt: number | null;
  /** Highest heartbeat seq accepted (-1 before the first). */
  lastHeartbeatSeq: number;
  queueDepth: number;
  load: number;
  createdAt: number;
}

export interface RegisterAgentInput {
  poolId: string;
  ownerAccountId: string;
  endpoint: string;
  publicKey: string;
  hardware: Hardware;
  priceMicroUsdPerMTok: number;
  throughputTokensPerS: number;
  spans: SpanRecord[];
}

export interface UpdateAgentInput {
  priceMicroUsdPerMTok?: number;
  /** Replaces every span. */
  spans?: SpanRecord[];
  status?: 'active' | 'draining' | 'offline';
  endpoint?: string;
}

/**
 * One routing candidate: an agent's span of one model with the live figures routing scores on.
 * An agent holding several spans of the model appears once per span.
 */
export interface RouteCandidate {
  agentId: string;
  poolId: string;
  ownerAccountId: string;
  region: string;
  latitude: number | null;
  longitude: number | null;
  endpoint: string;
  publicKey: string;
  layers: [number, number];
  priceMicroUsdPerMTok: number;
  /** EWMA of observed time to first token, ms (null: never observed). */
  ttftMsEwma: number | null;
  /** EWMA of observed time per generated token, ms (null: never observed). */
  perTokenMsEwma: number | null;
  /** EWMA of failures in [0, 1] (1 = every recent job failed). */
  failureRateEwma: number;
  /** Observations folded so far (lets routing trust a figure after a few samples only). */
  observations: number;
  queueDepth: number;
  reputation: number;
  status: AgentStatus;
  cooldownUntil: number | null;
  probation: boolean;
  stakeMicroUsd: number;
  lastHeartbeatAt: number | null;
  /** Re-execution checks of this agent's jobs that passed (probation ends after enough). */
  checksPassed?: number;
  /**
   * An open dispute accuses this agent: routing leaves it out until the dispute settles (it may
   * still be on a route being checked, so the store returns it; absent: false).
   */
  inDispute?: boolean;
  /**
   * Routes this agent heads that routing must not choose now (agent ids in hop order): a check
   * of a job they served failed (`blockRoute`). Absent: none.
   */
  blockedRoutes?: string[][];
  /**
   * A route of this agent's (of any model) failed a check and the blame that names the guilty
   * hop has not come yet: routing leaves it out of every route (`RouteBlockInput.holdUntil`). Absent: false.
   */
  held?: boolean;
}

export interface CandidateQuery {
  /** Only agents whose last heartbeat is at or after this time. */
  heartbeatAfter: number;
  /** Only status 'active', never slashed; cooldown and probation are returned for routing to weigh. */
  limit: number;
  /**
   * Prefer this region: implementations return its agents first (all of them up to `limit`),
   * then others. Routing still decides whether others may be used.
   */
  region?: string;
  /** Edge location the EWMAs should be specific to, when the store keeps them per location. */
  location?: string;
  /** Now, for route blocks: those ending after it are returned (default: the wall clock). */
  at?: number;
}

/** What the edge observed of one agent in one job attempt; folded into the agent's EWMAs. */
export interface Observation {
  agentId: string;
  modelId: string;
  /** Edge location (e.g. Cloudflare colo or region) that observed it. */
  location: string;
  /** Time to first token of the route this agent was in, ms (omitted when no token arrived). */
  ttftMs?: number;
  /** Mean time per token after the first, ms. */
  perTokenMs?: number;
  /** true = the agent did its part; false = it failed, timed out or attested badly. */
  ok: boolean;
  at: number;
}

export interface HeartbeatInput {
  agentId: string;
  seq: number;
  sentAt: number;
  receivedAt: number;
  queueDepth: number;
  load: number;
  freeKvBytes: number;
  activeSessions: number;
}

/**
 * `ok`: applied. `replay`: seq not strictly greater than the last accepted (nothing changed).
 * `unknown_agent`: no such agent (or deregistered).
 */
export type HeartbeatResult = 'ok' | 'replay' | 'unknown_agent';

/** Public, read-only view for `GET /v1/pools`. */
export interface PublicPool {
  id: string;
  name: string;
  region: string;
  agents: Array<{
    id: string;
    publicKey: string;
    status: AgentStatus;
    priceMicroUsdPerMTok: number;
    reputation: number;
    spans: SpanRecord[];
    lastHeartbeatAt: number | null;
    queueDepth: number | null;
    ttftMsEwma: number | null;
    perTokenMsEwma: number | null;
  }>;
}

// ---------------------------------------------------------------- jobs

export interface JobAttemptRecord {
  ticket: SignedTicket;
  /** One entry per verified chunk: every hop's signed attestation, in route order. */
  chunks: SignedAttestation[][];
  outcome: 'completed' | 'failed' | 'cancelled';
  /** Why the attempt failed (e.g. 'bad_signature', 'timeout'), when it did. */
  failure?: string;
}

export interface JobStartInput {
  id: string;
  accountId: string;
  apiKeyId: string;
  modelId: string;
  createdAt: number;
  /** Agent ids of the first route tried, in order. */
  route: string[];
  promptTokens: number;
}

export interface JobFinishInput {
  id: string;
  status: 'completed' | 'failed' | 'cancelled';
  finishReason: 'stop' | 'length' | 'cancelled' | 'error' | null;
  attempts: JobAttemptRecord[];
  /** Completion tokens delivered to the client, in order. */
  tokenIds: number[];
  promptTokens: number;
  completionTokens: number;
  costMicroUsd: number;
  finishedAt: number;
}

export interface JobRecord {
  id: string;
  accountId: string;
  apiKeyId: string;
  modelId: string;
  status: 'running' | 'completed' | 'failed' | 'cancelled';
  finishReason: JobFinishInput['finishReason'];
  route: string[];
  attempts: JobAttemptRecord[];
  tokenIds: number[];
  promptTokens: number;
  completionTokens: number;
  costMicroUsd: number;
  createdAt: number;
  finishedAt: number | null;
  /** Outcome of the job's re-execution check (null or absent: not checked). */
  checkStatus?: JobCheckStatus | null;
  /** The check steps recorded on the job (`recordCheck` entries, in order; absent: none). */
  checks?: unknown[];
  /** Set once when the job was found bad and its cost handed back (null or absent: not refunded). */
  refund?: JobRefund | null;
}

/** A job's cost handed back to its API key because a re-execution check found the job bad. */
export interface JobRefund {
  /** Micro-USD: the job's whole `costMicroUsd`. */
  amountMicroUsd: number;
  /** Why (e.g. the failing verdict's reason). */
  reason: string;
  at: number;
}

export interface RefundJobInput {
  jobId: string;
  reason: string;
  /** JSON kept with the ledger entry (e.g. the dispute and the accused agent). */
  evidence: unknown;
  at: number;
}

export interface JobRefundResult extends JobRefund {
  jobId: string;
  accountId: string;
  apiKeyId: string;
}

/** A dispute about a job, its settlement told apart: `rejected` disputes were dismissed or voided. */
export interface JobDisputeRecord {
  id: string;
  agentId: string;
  status: 'open' | 'upheld' | 'dismissed' | 'voided';
  openedAt: number;
  resolvedAt: number | null;
}

/** pass / fail / inconclusive: a check's verdict; upheld / dismissed / voided: its dispute's end. */
export type JobCheckStatus = 'pass' | 'fail' | 'inconclusive' | 'upheld' | 'dismissed' | 'voided';

/** One step of a job's re-execution check (edge/checks/run-checks.ts). */
export interface CheckRecordInput {
  jobId: string;
  status: JobCheckStatus;
  /** The signed verdict or dispute step (appended to the job's check history). */
  entry: unknown;
  /** Agents whose `jobs_checked` counter goes up by one. */
  checkedAgentIds?: string[];
  /** Agents whose `checks_passed` counter goes up by one. */
  passedAgentIds?: string[];
  at: number;
}

export interface SettleDisputeInput {
  status: 'upheld' | 'rejected';
  checkerAgentIds: string[];
  evidence: unknown;
  at: number;
}

// ---------------------------------------------------------------- ledger

export interface SlashInput {
  agentId: string;
  amountMicroUsd: number;
  reason: string;
  /** JSON evidence (e.g. the offending attestation chunk and ticket). */
  evidence: unknown;
  jobId?: string;
  at: number;
}

export interface DisputeInput {
  jobId: string;
  agentId: string;
  reason: string;
  /** JSON; the edge writes `{ ticket, verdicts: [signed first verdict] }` (third checks append to `verdicts`). */
  evidence: unknown;
  at: number;
  /** The first checker, whose failing verdict opened it (the start of `checkerAgentIds`). */
  firstCheckerId?: string;
  /** What a third check needs, kept while it is open so the scheduled tick can retry it. */
  check?: DisputeCheck;
  /** The tick retries its third check from then on (absent: never). */
  retryAfter?: number;
}

export interface DisputeRecord extends DisputeInput {
  id: string;
  status: 'open' | 'upheld' | 'rejected';
}

/** What a dispute's third check needs, beyond the dispute itself (kept while it is open). */
export interface DisputeCheck {
  modelId: string;
  numLayers: number;
  /** Exactly what third checkers are sent (ticket, prompt and prefix ids, attestations, disclosures). */
  request: CheckRequest;
  /**
   * Set when a hop check opened the dispute (span checkers, docs/trust.md §2): the hop it re-ran.
   * Third checks are hop checks of the same hop, sent `request` scoped to it. Absent: whole-route checks.
   */
  hop?: number;
  /** The agents of the chain whose last segment opened it (chain-checks.ts): no third check's chain goes through them. */
  via?: string[];
}

/** How the last retry of a dispute's third check went. */
export interface DisputeRetryNote {
  at: number;
  /**
   * `no_eligible_checker`: no agent may run it now (retried as agents join); `no_answer`: none
   * answered; `inconclusive`: the answers settled nothing; `no_request`: opened without a check
   * request, it waits for its timeout.
   */
  outcome: 'no_eligible_checker' | 'no_answer' | 'inconclusive' | 'no_request';
  /** Checkers asked in that retry. */
  asked: number;
}

/** An open dispute whose third check the scheduled tick retries. */
export interface DisputeRetry {
  id: string;
  jobId: string;
  /** The accused. */
  agentId: string;
  reason: string;
  openedAt: number;
  /** [first checker, ...third checkers that answered so far]. */
  checkerAgentIds: string[];
  /** Signed verdicts so far, in the same order (evidence for a slash). */
  verdicts: unknown[];
  /** Null for a dispute opened without one (it cannot be retried; it is voided at its timeout). */
  check: DisputeCheck | null;
}

/** A route routing must not choose: a check of a job it served failed (docs/trust.md §7). */
export interface RouteBlockInput {
  modelId: string;
  /** Agent ids in hop order. */
  route: string[];
  jobId: string;
  reason: string;
  at: number;
  until: number;
  /** Every hop of the route sits out all routing until then (ended early by `releaseRouteHold`); absent: no hold. */
  holdUntil?: number;
}

export interface RouteBlock extends RouteBlockInput {
  id: string;
}

export interface EdgeKeyRecord {
  id: string;
  /** Raw Ed25519 public key, base64url. */
  publicKey: string;
  createdAt: number;
  retiredAt: number | null;
}

// ---------------------------------------------------------------- the store

/** `ModelFileStore` (./model-files.ts): an imported model's tokenizer files. */
export interface RegistryStore extends ModelFileStore {
  // --- API keys (auth)
  /** The key with this prefix (revoked ones included: the edge decides), or null. */
  getApiKeyByPrefix(prefix: string): Promise<ApiKeyRecord | null>;
  createApiKey(input: CreateApiKey): Promise<ApiKeyRecord>;
  revokeApiKey(id: string, at: number): Promise<void>;
  /** Best-effort, called off the response path. */
  touchApiKey(id: string, at: number): Promise<void>;
  /**
   * Atomically adds to the key's usage in the minute window starting at `windowStart` and
   * returns the totals after the addition (rate limits read these).
   */
  addUsage(apiKeyId: string, windowStart: number, delta: UsageWindow): Promise<UsageWindow>;
  /** Adds to the key's `spentMicroUsd` (budget). */
  chargeApiKey(apiKeyId: string, costMicroUsd: number): Promise<void>;

  // --- models
  /** Models with their fresh-agent counts (heartbeat at or after `heartbeatAfter`). */
  listModels(opts: { heartbeatAfter: number; limit: number }): Promise<ModelSummary[]>;
  /** By id (manifest hash) or by name. */
  getModel(idOrName: string): Promise<ModelRecord | null>;
  /** Idempotent on the manifest hash; a name taken by another manifest is a conflict (throws StoreConflictError). */
  publishModel(input: { manifest: Manifest; id: string; publishedBy: string | null; at: number }): Promise<ModelRecord>;

  // --- routing
  listRouteCandidates(modelId: string, query: CandidateQuery): Promise<RouteCandidate[]>;
  /** Registered public keys by agent id (unknown ids are absent from the map). */
  getAgentKeys(agentIds: readonly string[]): Promise<Map<string, string>>;
  /**
   * Appends observations and folds them into each agent's EWMAs, in one transaction, with
   * alpha = EWMA_ALPHA: `ewma = ewma === null ? x : ewma + alpha * (x - ewma)`; the failure
   * rate folds `ok ? 0 : 1`; `observations` counts them. Absent figures leave their EWMA alone.
   */
  recordObservations(observations: readonly Observation[]): Promise<void>;
  /** Routing skips the agent until `until`. */
  setCooldown(agentId: string, until: number, reason: string): Promise<void>;

  // --- pool owners
  createPool(input: CreatePoolInput): Promise<PoolRecord>;
  listPools(ownerAccountId: string, limit: number): Promise<PoolRecord[]>;
  getPool(id: string): Promise<PoolRecord | null>;
  /** Public view of pools and their live agents (bounded; `cursor` = last pool id of the previous page). */
  listPublicPools(opts: { limit: number; cursor?: string; region?: string }): Promise<PublicPool[]>;
  registerAgent(input: RegisterAgentInput, at: number): Promise<AgentRecord>;
  getAgent(id: string): Promise<AgentRecord | null>;
  /** Null when the agent does not exist (or is deregistered). */
  updateAgent(id: string, patch: UpdateAgentInput): Promise<AgentRecord | null>;
  /** Marks it deregistered (kept for the ledger); false when it did not exist. */
  deregisterAgent(id: string, at: number): Promise<boolean>;
  /** Atomic: applies only when `seq` is strictly greater than the last accepted seq. */
  applyHeartbeat(input: HeartbeatInput): Promise<HeartbeatResult>;

  // --- jobs
  recordJobStart(input: JobStartInput): Promise<void>;
  recordJobFinish(input: JobFinishInput): Promise<void>;
  /**
   * Jobs still `running` that started before `startedBefore` (the edge running them went away: a
   * crash, a restart, an outage of the registry when it finished) are ended: status `failed`,
   * finish reason `error`, cost 0, finished at `at`; at most `limit`, oldest first. Returns their ids.
   */
  failAbandonedJobs(input: { startedBefore: number; at: number; limit: number }): Promise<string[]>;
  /** Only the account's own jobs (another account's job reads as null). */
  getJob(id: string, accountId: string): Promise<JobRecord | null>;
  /**
   * Hands a finished job's cost back to its API key, once per job, atomically: marks the job
   * refunded (its whole `costMicroUsd`, the reason, the time), lowers the key's `spentMicroUsd`
   * by that amount (never below 0) and, when the amount is not 0, appends a `refund` ledger
   * entry. Null when nothing was refunded now: the job is unknown, unfinished or already refunded.
   */
  refundJob(input: RefundJobInput): Promise<JobRefundResult | null>;

  // --- ledger
  addStake(poolId: string, amountMicroUsd: number, reason: string, at: number): Promise<void>;
  /** Takes stake from the agent's pool, marks the agent slashed, records the evidence. */
  slash(input: SlashInput): Promise<void>;
  /** Adds `delta` (negative to lower) to the reputation, clamped to [0, 1], with a ledger entry. */
  adjustReputation(agentId: string, delta: number, reason: string, evidence: unknown, at: number): Promise<void>;
  openDispute(input: DisputeInput): Promise<DisputeRecord>;
  /** Disputes about one job, oldest first, at most `limit`. */
  listJobDisputes(jobId: string, limit: number): Promise<JobDisputeRecord[]>;
  /** Closes an open dispute (no-op when it is already settled); its check request and retry time are cleared. */
  settleDispute(id: string, input: SettleDisputeInput): Promise<void>;
  /**
   * Voids (status `rejected`, settlement `{ state: 'voided', reason: 'timeout' }`) up to `limit`
   * disputes still open that were opened before `openedBefore`, and ends the probation of each
   * accused agent left with no open dispute; their check requests and retry times are cleared.
   * Returns what it voided.
   */
  voidStaleDisputes(input: { openedBefore: number; at: number; limit: number }): Promise<Array<{ id: string; agentId: string; jobId: string }>>;
  /**
   * Appends a third checker's answer to an open dispute: its id to `checkerAgentIds`, its signed
   * verdict to the evidence's `verdicts` (no-op once settled).
   */
  recordDisputeCheck(id: string, input: { checkerAgentId: string; verdict: unknown; at: number }): Promise<void>;
  /**
   * Open disputes due for a retry of their third check (`retryAfter` at or before `at`), the
   * longest due first, at most `limit`; each is pushed to `at + retryMs` in the same statement,
   * so ticks running at once never take the same dispute.
   */
  claimDisputeRetries(input: { at: number; retryMs: number; limit: number }): Promise<DisputeRetry[]>;
  /** Keeps how the last retry went on an open dispute (replaces the previous note). */
  noteDisputeRetry(id: string, note: DisputeRetryNote): Promise<void>;
  /** Routing scores an agent on probation with a penalty (open disputes). */
  setProbation(agentId: string, on: boolean): Promise<void>;
  /** Routing leaves the route out until `until` (candidates of its first hop carry it in `blockedRoutes`). */
  blockRoute(input: RouteBlockInput): Promise<void>;
  /** Ends now the hold of the blocks of this route put there for this job (the blame named a hop); the blocks stay. */
  releaseRouteHold(input: { jobId: string; route: readonly string[]; at: number }): Promise<void>;
  /** Ends now the blocks (and holds) of this route put there for this job (its dispute was dismissed or voided). */
  liftRouteBlocks(input: { jobId: string; route: readonly string[]; at: number }): Promise<void>;
  /**
   * Deletes up to `limit` blocks that ended at or before `at`, and ends the probation of their
   * hops that are accused in no open dispute and on no route still blocked. Returns them.
   */
  expireRouteBlocks(input: { at: number; limit: number }): Promise<RouteBlock[]>;
  /** Records a check step on the job (status, history) and bumps the agents' check counters. */
  recordCheck(input: CheckRecordInput): Promise<void>;

  // --- edge keys
  /** Keys agents should trust (current and not-yet-retired ones). */
  listEdgeKeys(): Promise<EdgeKeyRecord[]>;
  /** Idempotent: publishes the edge's signing public key. */
  upsertEdgeKey(input: { id: string; publicKey: string; at: number }): Promise<void>;
}

/** Thrown by a store for a uniqueness conflict the caller can report as 409. */
export class StoreConflictError extends Error {
  override readonly name = 'StoreConflictError';
}

/** Weight of the newest observation in every EWMA the store keeps. */
export const EWMA_ALPHA = 0.2;

/** Start of the minute window that `at` falls in. */
export function usageWindowStart(at: number): number {
  return Math.floor(at / 60_000) * 60_000;
}
