/**
 * Edge settings with their defaults. The Workers entry parses overrides from the environment
 * (worker.ts); tests pass them to createApp directly.
 *
 * @example
 * const config = resolveConfig({ keyCacheTtlMs: 1000 });
 */
import { EXPLORATION_SHARE } from './routing/score.js';
import type { CorsOrigins } from './http/cors.js';
export interface EdgeConfig {
  /** Largest request body accepted, bytes (413 above). */
  maxBodyBytes: number;
  /** A slow client must finish sending its body within this, ms (408 after). */
  bodyReadTimeoutMs: number;
  /** API key cache TTL, ms: revocation takes effect within it. Capped at 5000. */
  keyCacheTtlMs: number;
  /** Routing candidates cache TTL per model and region, ms. */
  candidateCacheTtlMs: number;
  /** Models cache TTL, ms. */
  modelCacheTtlMs: number;
  /** Candidates read per model (bounded query). */
  candidateLimit: number;
  /** Agents whose last heartbeat is older are not routed to, ms. */
  heartbeatStaleMs: number;
  /** Interval agents are told to heartbeat at, ms. */
  heartbeatIntervalMs: number;
  /** Head agent must return its first event (and the first token) within this, ms. */
  firstTokenTimeoutMs: number;
  /** Longest silence between two events of a running job, ms. */
  interTokenTimeoutMs: number;
  /** Whole-job deadline written into tickets, ms from issue. */
  jobDeadlineMs: number;
  /** Routes tried per request (first attempt included). */
  maxAttempts: number;
  /** How long a failed agent is kept out of routing, ms. */
  cooldownMs: number;
  /** Reputation lost for a bad attestation (reputation is in [0, 1]). */
  badAttestationPenalty: number;
  /** Streams: wait this long for the first token before committing a 200 and sending keep-alives, ms. */
  keepAliveMs: number;
  /** max_tokens when the request gives none. */
  defaultMaxTokens: number;
  /** Name of this edge location in observations (Workers: the colo, when known). */
  location: string;
  /** Registration proofs older than this are refused, ms. */
  registrationProofMaxAgeMs: number;
  /** Share of requests that try a random eligible route first, so recovered agents get traffic back. */
  explorationShare: number;
  /**
   * Share of requests (0..1) that may go to a route with a hop whose pool holds no stake, when a
   * fully staked route exists. 1 (the default) allows all: a fresh network has no stake yet;
   * production sets it low (e.g. 0.1). With no staked route at all, unstaked routes serve only
   * within the share; beyond it the answer is 503.
   */
  unstakedTrafficShare: number;
  /**
   * Attestation chunks written into tickets: the route signs once per this many generation steps
   * (1 = every step). Longer chunks divide signing and verification per token.
   */
  attestChunkSteps: number;
  /**
   * Streams: a chunk also closes once open this long, ms, so tokens reach the client at most about
   * this late (the prefill is always a chunk of its own). Answers that are not streamed use at
   * least 1000 ms.
   */
  attestChunkDelayMs: number;
  /**
   * Origins whose pages may call the inference routes (edge/http/cors.ts): `*` (the default: API
   * keys are bearer tokens, never cookies) or exact origins. Owner and admin routes never answer
   * cross-origin.
   */
  corsOrigins: CorsOrigins;
}

export const DEFAULT_CONFIG: EdgeConfig = {
  maxBodyBytes: 1024 * 1024,
  bodyReadTimeoutMs: 10_000,
  keyCacheTtlMs: 5_000,
  candidateCacheTtlMs: 2_000,
  modelCacheTtlMs: 10_000,
  candidateLimit: 256,
  heartbeatStaleMs: 30_000,
  heartbeatIntervalMs: 5_000,
  firstTokenTimeoutMs: 30_000,
  interTokenTimeoutMs: 15_000,
  jobDeadlineMs: 300_000,
  maxAttempts: 4,
  cooldownMs: 30_000,
  badAttestationPenalty: 0.2,
  keepAliveMs: 1_000,
  defaultMaxTokens: 256,
  location: 'local',
  registrationProofMaxAgeMs: 300_000,
  explorationShare: EXPLORATION_SHARE,
  unstakedTrafficShare: 1,
  attestChunkSteps: 16,
  attestChunkDelayMs: 50,
  corsOrigins: '*',
};

export function resolveConfig(overrides: Partial<EdgeConfig> = {}): EdgeConfig {
  const config = { ...DEFAULT_CONFIG, ...overrides };
  config.keyCacheTtlMs = Math.min(config.keyCacheTtlMs, 5_000);
  return config;
}
