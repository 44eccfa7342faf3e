/**
 * The schemas the SDK validates with, in zod/mini: check for check the same as the edge's zod
 * schemas (protocol/api.ts, ticket.ts, attestation.ts, owner-api.ts), which they mirror. Answers
 * from the network are hostile, so every one is parsed here before the SDK reads it (shapes
 * checked, sizes bounded); zod/mini is the same engine as zod with a functional API that a
 * bundler can trim, which keeps the SDK's browser bundle small (budget in test/unit/sdk-bundle.test.ts).
 *
 * The types stay those of protocol/: the `Mirrors` checks at the end fail the type check when a
 * schema here and its protocol twin infer different types, and test/unit/sdk-schemas.test.ts
 * runs both on the same valid and invalid bodies. A change to a protocol schema the SDK reads
 * goes here too.
 *
 * @example
 * const parsed = chatCompletionSchema.safeParse(json, PARSE_CONTEXT);
 * if (!parsed.success) throw new APIResponseValidationError(parsed.error.message, requestId);
 */
import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';
import { MAX_CHUNK_HOPS } from '../../protocol/attestation-chain.js';
import { MAX_HIDDEN_COMMITMENT_CHARS, MAX_MESSAGES, MAX_OUTPUT_TOPLOC_CHARS, MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS, MAX_TOOL_JSON_BYTES, MAX_TOOLS } from '../../protocol/limits.js';
import type * as api from '../../protocol/api.js';
import type * as attestation from '../../protocol/attestation.js';
import type * as ownerApi from '../../protocol/owner-api.js';
import type * as ticket from '../../protocol/ticket.js';

/**
 * Parse options giving issues zod's English messages (as the edge's errors read), without
 * setting zod's global locale for the rest of the page.
 */
export const PARSE_CONTEXT = { error: en().localeError } as const;

/**
 * What the client needs of a schema to read an answer: zod's `safeParse` (the schemas here fit,
 * and so does any zod schema).
 */
export interface ResponseSchema<T> {
  safeParse(data: unknown, params?: z.core.ParseContext<z.core.$ZodIssue>): { success: true; data: T } | { success: false; error: { message: string } };
}

const int = () => z.number().check(z.int());
const nonnegativeInt = () => z.number().check(z.int(), z.nonnegative());
const positiveInt = () => z.number().check(z.int(), z.positive());
const boundedString = (min: number, max: number) => z.string().check(z.minLength(min), z.maxLength(max));
const hex64 = z.string().check(z.regex(/^[0-9a-f]{64}$/));

// protocol/ticket.ts

const layerRangeSchema = z
  .tuple([nonnegativeInt(), nonnegativeInt()])
  .check(z.refine(([a, b]) => a < b, 'a layer range is [start, end) with start < end'));

const routeHopSchema = z.object({
  agentId: boundedString(1, 64),
  layers: layerRangeSchema,
  endpoint: z.string().check(z.url(), z.maxLength(512)),
  publicKey: z.optional(z.string().check(z.regex(/^[A-Za-z0-9_-]{43}$/))),
});

const samplingSchema = z.object({
  temperature: z.number().check(z.minimum(0), z.maximum(2)),
  topP: z.number().check(z.gt(0), z.maximum(1)),
  topK: z.number().check(z.int(), z.minimum(0), z.maximum(1000)),
  seed: z.number().check(z.int(), z.minimum(0), z.maximum(2 ** 32 - 1)),
});

const chunkingSchema = z.object({
  maxSteps: z.number().check(z.int(), z.minimum(1), z.maximum(256)),
  maxDelayMs: z.number().check(z.int(), z.minimum(0), z.maximum(60_000)),
});

const ticketSchema = z.object({
  v: z.literal(1),
  jobId: boundedString(1, 64),
  modelId: hex64,
  dtype: z.enum(['float32', 'float16']),
  route: z.array(routeHopSchema).check(z.minLength(1), z.maxLength(16)),
  inputHash: hex64,
  promptTokens: z.number().check(z.int(), z.positive(), z.maximum(1_000_000)),
  prefixTokens: z.number().check(z.int(), z.nonnegative(), z.maximum(1_000_000)),
  limits: z.object({
    maxTokens: z.number().check(z.int(), z.positive(), z.maximum(1_000_000)),
    deadline: positiveInt(),
  }),
  sampling: samplingSchema,
  stopTokenIds: z.array(nonnegativeInt()).check(z.maxLength(64)),
  chunking: z.optional(chunkingSchema),
  nonce: z.string().check(z.regex(/^[A-Za-z0-9_-]{16,64}$/)),
  issuedAt: positiveInt(),
  expiresAt: positiveInt(),
  edgeKeyId: boundedString(1, 64),
});

export const signedTicketSchema = z.object({ ticket: ticketSchema, signature: z.string().check(z.maxLength(128)) });

// protocol/attestation.ts

const attestationSchema = z.object({
  v: z.literal(1),
  ticketHash: hex64,
  jobId: boundedString(1, 64),
  agentId: boundedString(1, 64),
  modelId: hex64,
  hop: z.number().check(z.int(), z.nonnegative(), z.maximum(15)),
  layers: z.tuple([nonnegativeInt(), nonnegativeInt()]),
  steps: z.tuple([nonnegativeInt(), nonnegativeInt()]),
  inputCommitment: hex64,
  outputCommitment: hex64,
  outputTokenIds: z.optional(z.array(nonnegativeInt()).check(z.maxLength(4096))),
  hiddenCommitment: z.optional(z.string().check(z.maxLength(MAX_HIDDEN_COMMITMENT_CHARS))),
  outputTopLoc: z.optional(z.string().check(z.maxLength(MAX_OUTPUT_TOPLOC_CHARS))),
  prevHash: z.nullable(hex64),
  issuedAt: positiveInt(),
});

export const signedAttestationSchema = z.object({ att: attestationSchema, sig: z.string().check(z.maxLength(128)) });
/** One chunk as the chain verifier reads it (protocol/attestation.ts `ChainVerifier`). */
export const signedChunkSchema = z.array(signedAttestationSchema).check(z.maxLength(MAX_CHUNK_HOPS));

// protocol/api.ts: requests (exported by the SDK; the edge validates requests itself)

export const routePreferencesSchema = z.strictObject({
  sort: z._default(z.enum(['latency', 'price', 'balanced']), 'balanced'),
  max_price: z.optional(z.number().check(z.nonnegative())),
  max_latency_ms: z.optional(positiveInt()),
  region: z.optional(boundedString(1, 64)),
  allow_fallbacks: z._default(z.boolean(), true),
});

const stopText = () => boundedString(1, 256);
const stopSchema = z.optional(z.nullable(z.union([stopText(), z.array(stopText()).check(z.maxLength(8))])));
const nullableOptional = <T extends z.core.SomeType>(schema: T) => z.optional(z.nullable(schema));

const samplingFields = {
  model: boundedString(1, 128),
  max_tokens: nullableOptional(z.number().check(z.int(), z.positive(), z.maximum(32_768))),
  max_completion_tokens: nullableOptional(z.number().check(z.int(), z.positive(), z.maximum(32_768))),
  temperature: nullableOptional(z.number().check(z.minimum(0), z.maximum(2))),
  top_p: nullableOptional(z.number().check(z.gt(0), z.maximum(1))),
  top_k: nullableOptional(z.number().check(z.int(), z.minimum(0), z.maximum(1000))),
  seed: nullableOptional(z.number().check(z.int(), z.minimum(0), z.maximum(2 ** 32 - 1))),
  stop: stopSchema,
  user: z.optional(z.string().check(z.maxLength(256))),
  n: nullableOptional(z.literal(1)),
  stream: nullableOptional(z.boolean()),
  stream_options: nullableOptional(z.object({ include_usage: z.optional(z.boolean()) })),
  route: z.optional(routePreferencesSchema),
};

const functionNameSchema = z.string().check(z.regex(/^[A-Za-z0-9_-]{1,64}$/, 'function names: letters, digits, _ and -, at most 64'));

const toolSchema = z
  .object({
    type: z.literal('function'),
    function: z.object({
      name: functionNameSchema,
      description: z.optional(z.string()),
      parameters: z.optional(z.record(z.string(), z.unknown())),
      strict: nullableOptional(z.boolean()),
    }),
  })
  .check(z.refine((t) => new TextEncoder().encode(JSON.stringify(t)).byteLength <= MAX_TOOL_JSON_BYTES, `a tool is at most ${MAX_TOOL_JSON_BYTES} bytes of JSON`));

const toolCallSchema = z.object({
  id: boundedString(1, 128),
  type: z.literal('function'),
  function: z.object({ name: functionNameSchema, arguments: z.string().check(z.maxLength(MAX_PROMPT_CHARS)) }),
});

const promptText = () => z.string().check(z.maxLength(MAX_PROMPT_CHARS));
const textPartSchema = z.object({ type: z.literal('text'), text: promptText() });
const chatMessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
    content: z.nullable(z.union([promptText(), z.array(textPartSchema).check(z.maxLength(64))])),
    name: z.optional(z.string().check(z.maxLength(64))),
    tool_call_id: z.optional(z.string().check(z.maxLength(128))),
    tool_calls: z.optional(z.array(toolCallSchema).check(z.maxLength(MAX_TOOLS))),
  })
  .check(z.refine((m) => m.tool_calls === undefined || m.role === 'assistant', { message: 'only assistant messages carry tool_calls', path: ['tool_calls'] }));

export const chatCompletionRequestSchema = z.object({
  ...samplingFields,
  messages: z.array(chatMessageSchema).check(z.minLength(1), z.maxLength(MAX_MESSAGES)),
  tools: z.optional(z.array(toolSchema).check(z.maxLength(MAX_TOOLS))),
});

const tokenIdsSchema = z.array(nonnegativeInt()).check(z.minLength(1), z.maxLength(MAX_PROMPT_TOKENS));

export const completionRequestSchema = z.object({
  ...samplingFields,
  prompt: z.union([promptText(), z.array(promptText()).check(z.length(1)), tokenIdsSchema, z.array(tokenIdsSchema).check(z.length(1))]),
  echo: nullableOptional(z.boolean()),
});

// protocol/api.ts: responses

const usageSchema = z.object({
  prompt_tokens: nonnegativeInt(),
  completion_tokens: nonnegativeInt(),
  total_tokens: nonnegativeInt(),
});

const routeSummarySchema = z.object({
  hops: z.array(
    z.object({
      agent_id: z.string(),
      pool_id: z.string(),
      region: z.string(),
      layers: z.tuple([int(), int()]),
    }),
  ),
  price: z.number().check(z.nonnegative()),
  attempts: positiveInt(),
  region_met: z.optional(z.boolean()),
});

const attestationSummarySchema = z.object({
  job_id: z.string(),
  verified: z.boolean(),
  ticket_hash: z.string(),
  model_id: z.string(),
  chunks: nonnegativeInt(),
  chain_head: z.nullable(z.string()),
  url: z.string(),
});

const finishReasonSchema = z.nullable(z.enum(['stop', 'length']));

export const chatCompletionSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: int(),
  model: z.string(),
  system_fingerprint: nullableOptional(z.string()),
  choices: z.array(
    z.object({
      index: int(),
      message: z.object({ role: z.literal('assistant'), content: z.nullable(z.string()), refusal: z.optional(z.null()) }),
      finish_reason: finishReasonSchema,
      logprobs: z.null(),
    }),
  ),
  usage: usageSchema,
  route: routeSummarySchema,
  attestation: attestationSummarySchema,
});

export const chatCompletionChunkSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion.chunk'),
  created: int(),
  model: z.string(),
  system_fingerprint: nullableOptional(z.string()),
  choices: z.array(
    z.object({
      index: int(),
      delta: z.object({ role: z.optional(z.literal('assistant')), content: z.optional(z.string()) }),
      finish_reason: finishReasonSchema,
      logprobs: z.optional(z.null()),
    }),
  ),
  usage: nullableOptional(usageSchema),
  route: z.optional(routeSummarySchema),
  attestation: z.optional(attestationSummarySchema),
});

export const completionSchema = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: int(),
  model: z.string(),
  system_fingerprint: nullableOptional(z.string()),
  choices: z.array(z.object({ index: int(), text: z.string(), finish_reason: finishReasonSchema, logprobs: z.null() })),
  usage: z.optional(usageSchema),
  route: z.optional(routeSummarySchema),
  attestation: z.optional(attestationSummarySchema),
});

const modelSchema = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: int(),
  owned_by: z.string(),
  manifest_hash: z.string(),
  num_layers: int(),
  dtype: z.string(),
  agents: nonnegativeInt(),
});
export const modelListSchema = z.object({ object: z.literal('list'), data: z.array(modelSchema) });

const publicAgentSchema = z.object({
  id: z.string(),
  public_key: z.string(),
  status: z.string(),
  price: z.number().check(z.nonnegative()),
  reputation: z.number(),
  spans: z.array(z.object({ model_id: z.string(), layers: z.tuple([int(), int()]) })),
  last_heartbeat_at: z.nullable(z.string()),
  queue_depth: z.nullable(z.number()),
  ttft_ms: z.nullable(z.number()),
  per_token_ms: z.nullable(z.number()),
});
const publicPoolSchema = z.object({
  id: z.string(),
  name: z.string(),
  region: z.string(),
  agents: z.array(publicAgentSchema),
});
export const poolListSchema = z.object({ object: z.literal('list'), data: z.array(publicPoolSchema) });

export const jobCheckSchema = z.object({
  status: z.enum(['unchecked', 'pending', 'pass', 'fail', 'inconclusive', 'upheld', 'dismissed', 'voided']),
  verdict: z.optional(z.object({ reason: z.string(), detail: z.string(), step: z.optional(nonnegativeInt()) })),
  blame: z.optional(z.object({ attempt: nonnegativeInt(), hop: nonnegativeInt(), agent_id: z.string() })),
  dispute: z.optional(z.object({ id: z.string(), status: z.enum(['open', 'upheld', 'dismissed', 'voided']) })),
  refunded_micro_usd: z.optional(nonnegativeInt()),
});

export const jobAttestationSchema = z.object({
  job_id: z.string(),
  model_id: z.string(),
  num_layers: positiveInt(),
  edge_key_id: z.string(),
  edge_public_key: z.string(),
  attempts: z.array(
    z.object({
      ticket: signedTicketSchema,
      chunks: z.array(z.array(signedAttestationSchema)),
      outcome: z.enum(['completed', 'failed', 'cancelled']),
    }),
  ),
  token_ids: z.array(int()),
  check: z.optional(jobCheckSchema),
});

// protocol/owner-api.ts

export const edgeKeysSchema = z.object({ keys: z.array(z.object({ id: z.string(), public_key: z.string() })).check(z.minLength(1)) });

/**
 * Each schema here infers exactly the types of its protocol twin (input and output): a field
 * added, dropped or retyped on one side only fails `tsc`. Checks (bounds, patterns) have no type:
 * test/unit/sdk-schemas.test.ts compares those.
 */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Mirrors<Mini extends z.core.SomeType, Classic extends z.core.SomeType> = [Same<z.input<Mini>, z.input<Classic>>, Same<z.output<Mini>, z.output<Classic>>];
type Assert<T extends [true, true]> = T;
export type SchemaMirrorChecks = [
  Assert<Mirrors<typeof signedTicketSchema, typeof ticket.signedTicketSchema>>,
  Assert<Mirrors<typeof signedAttestationSchema, typeof attestation.signedAttestationSchema>>,
  Assert<Mirrors<typeof routePreferencesSchema, typeof api.routePreferencesSchema>>,
  Assert<Mirrors<typeof chatCompletionRequestSchema, typeof api.chatCompletionRequestSchema>>,
  Assert<Mirrors<typeof completionRequestSchema, typeof api.completionRequestSchema>>,
  Assert<Mirrors<typeof chatCompletionSchema, typeof api.chatCompletionSchema>>,
  Assert<Mirrors<typeof chatCompletionChunkSchema, typeof api.chatCompletionChunkSchema>>,
  Assert<Mirrors<typeof completionSchema, typeof api.completionSchema>>,
  Assert<Mirrors<typeof modelListSchema, typeof api.modelListSchema>>,
  Assert<Mirrors<typeof poolListSchema, typeof api.poolListSchema>>,
  Assert<Mirrors<typeof jobCheckSchema, typeof api.jobCheckSchema>>,
  Assert<Mirrors<typeof jobAttestationSchema, typeof api.jobAttestationSchema>>,
  Assert<Mirrors<typeof edgeKeysSchema, typeof ownerApi.edgeKeysSchema>>,
];
