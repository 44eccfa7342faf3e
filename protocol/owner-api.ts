/**
 * Pool-owner API (API keys with the `pool-owner` scope) and signed agent heartbeats.
 *
 * - `POST /v1/owner/pools` -> `poolSchema`; `GET /v1/owner/pools`
 * - `POST /v1/owner/agents` (register, with proof of key possession) -> `agentRegistrationSchema`
 * - `PATCH /v1/owner/agents/:id` (price, spans, status), `DELETE /v1/owner/agents/:id`
 * - `GET /v1/owner/models/:id` -> `ownerModelSchema` (which tokenizer files the edge holds)
 * - `PUT /v1/owner/models/:id/files/:path` (raw bytes) -> `modelFileUploadSchema`
 * - `POST /v1/agents/:id/heartbeat`: signed by the agent's registered key, strictly increasing `seq`
 * - `GET /v1/edge/keys`: the edge's ticket-signing public keys
 *
 * @example
 * const body = { ...registration, proof: await signBytes(key.privateKey, registrationProofBytes(registration)) };
 */
import { z } from 'zod';
import { utf8 } from './bytes.js';
import { canonicalJson, type CanonicalValue } from './canonical.js';
import { manifestSchema, tokenizerFileSchema } from './manifest.js';

export const regionSchema = z.string().regex(/^[a-z0-9-]{2,32}$/, 'region: lowercase letters, digits and dashes');

export const createPoolSchema = z.object({
  name: z.string().min(1).max(128),
  region: regionSchema,
  latitude: z.number().min(-90).max(90).optional(),
  longitude: z.number().min(-180).max(180).optional(),
});
export type CreatePool = z.infer<typeof createPoolSchema>;

export const poolSchema = createPoolSchema.extend({ id: z.string(), stake_micro_usd: z.number().int(), status: z.string() });

export const hardwareSchema = z.object({
  devices: z
    .array(
      z.object({
        kind: z.enum(['cpu', 'cuda']),
        name: z.string().max(256),
        memoryBytes: z.number().int().nonnegative(),
        cores: z.number().int().nonnegative().optional(),
      }),
    )
    .min(1)
    .max(64),
  memoryBytes: z.number().int().nonnegative(),
  platform: z.string().max(64),
});
export type Hardware = z.infer<typeof hardwareSchema>;

export const spanClaimSchema = z.object({
  model_id: z.string().regex(/^[0-9a-f]{64}$/),
  layers: z.tuple([z.number().int().nonnegative(), z.number().int().positive()]).refine(([a, b]) => a < b),
});

export const registerAgentSchema = z.object({
  pool_id: z.string().min(1).max(64),
  endpoint: z.string().url().max(512),
  public_key: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'raw Ed25519 public key, base64url'),
  hardware: hardwareSchema,
  /** USD per million tokens. */
  price: z.number().nonnegative().max(1000),
  spans: z.array(spanClaimSchema).min(1).max(64),
  throughput_tokens_per_s: z.number().nonnegative().max(1e7),
  /** Epoch ms: proofs older than a few minutes are refused. */
  issued_at: z.number().int().positive(),
  /** Agent signature over registrationProofBytes(body without proof). */
  proof: z.string().max(128),
});
export type RegisterAgent = z.infer<typeof registerAgentSchema>;

export function registrationProofBytes(body: Omit<RegisterAgent, 'proof'>): Uint8Array {
  return utf8('layernet.register/1\n' + canonicalJson(body as unknown as CanonicalValue));
}

export const agentRegistrationSchema = z.object({
  agent_id: z.string(),
  pool_id: z.string(),
  edge_key_id: z.string(),
  edge_public_key: z.string(),
  heartbeat_url: z.string(),
  heartbeat_interval_ms: z.number().int().positive(),
});
export type AgentRegistration = z.infer<typeof agentRegistrationSchema>;

export const updateAgentSchema = z
  .object({
    price: z.number().nonnegative().max(1000).optional(),
    spans: z.array(spanClaimSchema).min(1).max(64).optional(),
    status: z.enum(['active', 'draining', 'offline']).optional(),
    endpoint: z.string().url().max(512).optional(),
  })
  .refine((v) => Object.keys(v).length > 0, 'nothing to update');

export const heartbeatSchema = z.object({
  agent_id: z.string().min(1).max(64),
  /** Strictly increasing per agent: a replayed or reordered heartbeat is refused. */
  seq: z.number().int().nonnegative(),
  sent_at: z.number().int().positive(),
  queue_depth: z.number().int().nonnegative().max(1_000_000),
  load: z.number().min(0).max(1e6),
  free_kv_bytes: z.number().int().nonnegative(),
  active_sessions: z.number().int().nonnegative(),
  /** Agent signature over heartbeatBytes(body without signature). */
  signature: z.string().max(128),
});
export type Heartbeat = z.infer<typeof heartbeatSchema>;

export function heartbeatBytes(body: Omit<Heartbeat, 'signature'>): Uint8Array {
  return utf8('layernet.heartbeat/1\n' + canonicalJson(body as unknown as CanonicalValue));
}

export const edgeKeysSchema = z.object({ keys: z.array(z.object({ id: z.string(), public_key: z.string() })).min(1) });

/** `POST /v1/owner/models`: publish a model manifest (the model id is its hash). */
export const publishModelSchema = z.object({ manifest: manifestSchema });
/** Answer of `POST /v1/owner/models`. */
export const publishedModelSchema = z.object({ id: z.string(), name: z.string(), num_layers: z.number().int(), dtype: z.string(), created: z.boolean() });

/** A tokenizer file's name, as an imported model's manifest lists it (`:path` of the upload route). */
export const modelFilePathSchema = tokenizerFileSchema.shape.path;
export type ModelFilePath = z.infer<typeof modelFilePathSchema>;

/**
 * Answer of `GET /v1/owner/models/:id`: the model and its tokenizer files, each with whether the
 * edge holds a copy that matches the manifest. A model whose files are not all `uploaded` is not
 * served (503) until its owner uploads them (`pool-agent register` does).
 */
export const ownerModelSchema = z.object({
  id: z.string(),
  name: z.string(),
  num_layers: z.number().int(),
  dtype: z.string(),
  tokenizer_files: z.array(z.object({ path: modelFilePathSchema, bytes: z.number().int().positive(), uploaded: z.boolean() })),
});
export type OwnerModel = z.infer<typeof ownerModelSchema>;

/**
 * Answer of `PUT /v1/owner/models/:id/files/:path` (body: the file's bytes,
 * `application/octet-stream`): 201 with `created: true` when stored, 200 when it was there already.
 */
export const modelFileUploadSchema = z.object({
  model_id: z.string(),
  path: modelFilePathSchema,
  bytes: z.number().int().positive(),
  sha256: z.string(),
  created: z.boolean(),
});
export type ModelFileUpload = z.infer<typeof modelFileUploadSchema>;

/**
 * `POST /v1/admin/pools/:id/stake` (scope `admin`): an operator credits stake a pool owner has
 * deposited (payment happens outside this API). Recorded in the ledger; slashes draw on it.
 */
export const creditStakeSchema = z.object({
  amount_micro_usd: z.number().int().positive().max(1e12),
  reason: z.string().min(1).max(256),
});
export type CreditStake = z.infer<typeof creditStakeSchema>;
