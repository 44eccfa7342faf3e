/**
 * The Worker's environment, parsed once with zod: a bad configuration fails closed with a
 * message naming the variable (never an `undefined` deep inside a handler). No secret value
 * is ever part of the message.
 *
 * @example
 * const parsed = parseEdgeEnv(env);
 * if (!parsed.ok) return errorResponse(new ApiError('misconfigured', parsed.message), requestId);
 */
import { z } from 'zod';
import type { EdgeConfig } from './config.js';
import { parseCorsOrigins } from './http/cors.js';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max).optional();

export const envSchema = z.object({
  /** Registry connection (ignored when a HYPERDRIVE binding is present). */
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'a postgres:// URL').optional(),
  HYPERDRIVE: z.object({ connectionString: z.string().min(1) }).passthrough().optional(),
  /** Ed25519 PKCS#8 private key, base64url (protocol/keys.ts `privateKeyPkcs8`). */
  EDGE_SIGNING_KEY: z.string().regex(/^[A-Za-z0-9_-]{40,}$/, 'Ed25519 PKCS#8 private key, base64url'),
  EDGE_KEY_ID: z.string().min(1).max(64),
  /** Name of this edge location in observations (default "workers"). */
  EDGE_LOCATION: z.string().min(1).max(64).optional(),
  KEY_CACHE_TTL_MS: int(0, 5_000),
  CANDIDATE_CACHE_TTL_MS: int(0, 60_000),
  HEARTBEAT_STALE_MS: int(1_000, 3_600_000),
  FIRST_TOKEN_TIMEOUT_MS: int(100, 600_000),
  INTER_TOKEN_TIMEOUT_MS: int(100, 600_000),
  MAX_BODY_BYTES: int(1_024, 64 * 1024 * 1024),
  MAX_ATTEMPTS: int(1, 16),
  KEEPALIVE_MS: int(10, 60_000),
  /** Share of requests routed to a random eligible route first (0..0.5, default 0.05). */
  EXPLORATION_SHARE: z.coerce.number().min(0).max(0.5).optional(),
  /** Share of requests routes with an unstaked hop may take (0..1, default 1 = no limit). */
  UNSTAKED_TRAFFIC_SHARE: z.coerce.number().min(0).max(1).optional(),
  /** Generation steps per attestation chunk (1..256, default 16; 1 = one signature per step). */
  ATTEST_CHUNK_STEPS: int(1, 256),
  /** Streams: longest a chunk stays open, ms (default 50). */
  ATTEST_CHUNK_DELAY_MS: int(0, 60_000),
  /** Re-execution checks: HMAC secret (base64url, >= 32 bytes) choosing the sampled jobs. Absent: checks off. */
  CHECK_SECRET: z
    .string()
    .regex(/^[A-Za-z0-9_-]{43,}$/, 'base64url of at least 32 bytes')
    .optional(),
  /** Forces the check rate in [0, 1] (tests, operators); absent: the trust policy's rate. */
  CHECK_RATE_OVERRIDE: z.coerce.number().min(0).max(1).optional(),
  /** Origins whose pages may call the inference API: `*` (default) or comma-separated origins (`https://app.example.com,http://localhost:5173`). */
  CORS_ORIGINS: z
    .string()
    .transform((raw, ctx) => {
      const origins = parseCorsOrigins(raw);
      if (origins === null) {
        ctx.addIssue({ code: 'custom', message: '`*` or comma-separated origins, each scheme://host[:port] in lowercase, without path or trailing slash' });
        return z.NEVER;
      }
      return origins;
    })
    .optional(),
});
export type EdgeEnv = z.infer<typeof envSchema>;

export type ParsedEnv =
  | { ok: true; env: EdgeEnv; databaseUrl: string; config: Partial<EdgeConfig> }
  | { ok: false; message: string; variables: string[] };

export function parseEdgeEnv(raw: unknown): ParsedEnv {
  const parsed = envSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const variables = [...new Set(parsed.error.issues.map((i) => String(i.path[0] ?? 'env')))];
    return { ok: false, variables, message: `edge misconfigured: ${parsed.error.issues.map((i) => `${String(i.path[0] ?? 'env')} (${i.message})`).join('; ')}` };
  }
  const env = parsed.data;
  const databaseUrl = env.HYPERDRIVE?.connectionString ?? env.DATABASE_URL;
  if (!databaseUrl) return { ok: false, variables: ['DATABASE_URL'], message: 'edge misconfigured: DATABASE_URL (or a HYPERDRIVE binding) is required' };
  const config: Partial<EdgeConfig> = { location: env.EDGE_LOCATION ?? 'workers' };
  if (env.KEY_CACHE_TTL_MS !== undefined) config.keyCacheTtlMs = env.KEY_CACHE_TTL_MS;
  if (env.CANDIDATE_CACHE_TTL_MS !== undefined) config.candidateCacheTtlMs = env.CANDIDATE_CACHE_TTL_MS;
  if (env.HEARTBEAT_STALE_MS !== undefined) config.heartbeatStaleMs = env.HEARTBEAT_STALE_MS;
  if (env.FIRST_TOKEN_TIMEOUT_MS !== undefined) config.firstTokenTimeoutMs = env.FIRST_TOKEN_TIMEOUT_MS;
  if (env.INTER_TOKEN_TIMEOUT_MS !== undefined) config.interTokenTimeoutMs = env.INTER_TOKEN_TIMEOUT_MS;
  if (env.MAX_BODY_BYTES !== undefined) config.maxBodyBytes = env.MAX_BODY_BYTES;
  if (env.MAX_ATTEMPTS !== undefined) config.maxAttempts = env.MAX_ATTEMPTS;
  if (env.KEEPALIVE_MS !== undefined) config.keepAliveMs = env.KEEPALIVE_MS;
  if (env.EXPLORATION_SHARE !== undefined) config.explorationShare = env.EXPLORATION_SHARE;
  if (env.UNSTAKED_TRAFFIC_SHARE !== undefined) config.unstakedTrafficShare = env.UNSTAKED_TRAFFIC_SHARE;
  if (env.ATTEST_CHUNK_STEPS !== undefined) config.attestChunkSteps = env.ATTEST_CHUNK_STEPS;
  if (env.ATTEST_CHUNK_DELAY_MS !== undefined) config.attestChunkDelayMs = env.ATTEST_CHUNK_DELAY_MS;
  if (env.CORS_ORIGINS !== undefined) config.corsOrigins = env.CORS_ORIGINS;
  return { ok: true, env, databaseUrl, config };
}
