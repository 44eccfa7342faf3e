/**
 * The public HTTP API: OpenAI-compatible bodies plus our extensions (`route` preferences in
 * requests; `route` and `attestation` in responses). The edge validates with these schemas, the
 * SDK types itself from them, and /openapi.json is generated from them. The SDK reads answers
 * with zod/mini mirrors of them (sdk/src/schemas.ts, kept in step by tsc and
 * test/unit/sdk-schemas.test.ts): a change here goes there too.
 *
 * @example
 * const body = chatCompletionRequestSchema.parse(await req.json());
 */
import { z } from 'zod';
import { signedTicketSchema } from './ticket.js';
import { signedAttestationSchema } from './attestation.js';
import { MAX_MESSAGES, MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS, MAX_TOOL_JSON_BYTES, MAX_TOOLS } from './limits.js';

export { MAX_MESSAGES, MAX_PROMPT_CHARS, MAX_TOOL_JSON_BYTES, MAX_TOOLS };

export const routePreferencesSchema = z
  .object({
    /** What to optimise: observed latency, price, or a balance of both (default). */
    sort: z.enum(['latency', 'price', 'balanced']).default('balanced'),
    /** Highest acceptable price, USD per million tokens. */
    max_price: z.number().nonnegative().optional(),
    /** Highest acceptable expected time to first token, ms. */
    max_latency_ms: z.number().int().positive().optional(),
    /**
     * Preferred region (e.g. "eu-west"): its routes are tried first. With allow_fallbacks (the
     * default) other regions serve the request when the region has no usable route or its routes
     * fail; without, it is a filter (503 `no_route` when nothing there can serve). The answer's
     * `route.region_met` says which happened.
     */
    region: z.string().min(1).max(64).optional(),
    /** Whether another route may serve the request after a failure or outside the region. */
    allow_fallbacks: z.boolean().default(true),
  })
  .strict();
export type RoutePreferences = z.infer<typeof routePreferencesSchema>;

const stopSchema = z.union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).max(8)]).nullable().optional();

const samplingFields = {
  model: z.string().min(1).max(128),
  max_tokens: z.number().int().positive().max(32_768).nullable().optional(),
  max_completion_tokens: z.number().int().positive().max(32_768).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  /** Extension (as in vLLM/llama.cpp): 0 = off. */
  top_k: z.number().int().min(0).max(1000).nullable().optional(),
  seed: z.number().int().min(0).max(2 ** 32 - 1).nullable().optional(),
  stop: stopSchema,
  user: z.string().max(256).optional(),
  n: z.literal(1).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
  route: routePreferencesSchema.optional(),
};

/** OpenAI function names: letters, digits, underscores and dashes, at most 64. */
const functionNameSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'function names: letters, digits, _ and -, at most 64');

/**
 * A tool the model may call (OpenAI `tools[]`). The edge does not interpret it: it goes to the
 * model's chat template as given (a template without tool support, like the built-in Llama-2
 * one, leaves it out).
 */
export const toolSchema = z
  .object({
    type: z.literal('function'),
    function: z.object({
      name: functionNameSchema,
      description: z.string().optional(),
      /** JSON Schema of the arguments. */
      parameters: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullable().optional(),
    }),
  })
  .refine((t) => new TextEncoder().encode(JSON.stringify(t)).byteLength <= MAX_TOOL_JSON_BYTES, `a tool is at most ${MAX_TOOL_JSON_BYTES} bytes of JSON`);
export type Tool = z.infer<typeof toolSchema>;

/** A call the assistant made (OpenAI `tool_calls[]` of an assistant message); `arguments` is a JSON text. */
export const toolCallSchema = z.object({
  id: z.string().min(1).max(128),
  type: z.literal('function'),
  function: z.object({ name: functionNameSchema, arguments: z.string().max(MAX_PROMPT_CHARS) }),
});
export type ToolCall = z.infer<typeof toolCallSchema>;

const textPartSchema = z.object({ type: z.literal('text'), text: z.string().max(MAX_PROMPT_CHARS) });
export const chatMessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
    content: z.union([z.string().max(MAX_PROMPT_CHARS), z.array(textPartSchema).max(64)]).nullable(),
    name: z.string().max(64).optional(),
    /** A `tool` message: the id of the call it answers. */
    tool_call_id: z.string().max(128).optional(),
    /** An `assistant` message: the tools it called. */
    tool_calls: z.array(toolCallSchema).max(MAX_TOOLS).optional(),
  })
  .refine((m) => m.tool_calls === undefined || m.role === 'assistant', { message: 'only assistant messages carry tool_calls', path: ['tool_calls'] });
export type ChatMessage = z.infer<typeof chatMessageSchema>;

export const chatCompletionRequestSchema = z.object({
  ...samplingFields,
  messages: z.array(chatMessageSchema).min(1).max(MAX_MESSAGES),
  /** Tools the model may call, handed to its chat template. */
  tools: z.array(toolSchema).max(MAX_TOOLS).optional(),
});
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;

/** A prompt given as token ids: used as is (no special tokens added); each must be in the model's vocabulary. */
const tokenIdsSchema = z.array(z.number().int().nonnegative()).min(1).max(MAX_PROMPT_TOKENS);

export const completionRequestSchema = z.object({
  ...samplingFields,
  /** Text, or token ids (`number[]`); the one-element batch forms `[text]` and `[ids]` too. */
  prompt: z.union([z.string().max(MAX_PROMPT_CHARS), z.array(z.string().max(MAX_PROMPT_CHARS)).length(1), tokenIdsSchema, z.array(tokenIdsSchema).length(1)]),
  echo: z.boolean().nullable().optional(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

export const usageSchema = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  total_tokens: z.number().int().nonnegative(),
});

export const routeSummarySchema = z.object({
  /** Hops in order: which agent computed which layers. */
  hops: z.array(
    z.object({
      agent_id: z.string(),
      pool_id: z.string(),
      region: z.string(),
      layers: z.tuple([z.number().int(), z.number().int()]),
    }),
  ),
  /** USD per million tokens for this route. */
  price: z.number().nonnegative(),
  /** Routes tried before this one (failover). */
  attempts: z.number().int().positive(),
  /**
   * Present when the request asked for `route.region`: true when every hop that produced the
   * answer's tokens was in that region, false when another region served some of them (a
   * fallback: the region had no usable route, or its routes failed). Also the
   * `x-layernet-region-met` header.
   */
  region_met: z.boolean().optional(),
});
export type RouteSummary = z.infer<typeof routeSummarySchema>;

export const attestationSummarySchema = z.object({
  job_id: z.string(),
  verified: z.boolean(),
  ticket_hash: z.string(),
  model_id: z.string(),
  /** Attestation chunks verified: the prefill step, then chunks of up to ATTEST_CHUNK_STEPS steps (see ticket.chunking). */
  chunks: z.number().int().nonnegative(),
  /** Hash of the last attestation in the chain. */
  chain_head: z.string().nullable(),
  /** Where the full chain can be fetched. */
  url: z.string(),
});
export type AttestationSummary = z.infer<typeof attestationSummarySchema>;

export const finishReasonSchema = z.enum(['stop', 'length']).nullable();

export const chatCompletionSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string().nullable().optional(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({ role: z.literal('assistant'), content: z.string().nullable(), refusal: z.null().optional() }),
      finish_reason: finishReasonSchema,
      logprobs: z.null(),
    }),
  ),
  usage: usageSchema,
  route: routeSummarySchema,
  attestation: attestationSummarySchema,
});
export type ChatCompletion = z.infer<typeof chatCompletionSchema>;

export const chatCompletionChunkSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion.chunk'),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string().nullable().optional(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      delta: z.object({ role: z.literal('assistant').optional(), content: z.string().optional() }),
      finish_reason: finishReasonSchema,
      logprobs: z.null().optional(),
    }),
  ),
  usage: usageSchema.nullable().optional(),
  route: routeSummarySchema.optional(),
  attestation: attestationSummarySchema.optional(),
});
export type ChatCompletionChunk = z.infer<typeof chatCompletionChunkSchema>;

export const completionSchema = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string().nullable().optional(),
  choices: z.array(
    z.object({ index: z.number().int(), text: z.string(), finish_reason: finishReasonSchema, logprobs: z.null() }),
  ),
  usage: usageSchema.optional(),
  route: routeSummarySchema.optional(),
  attestation: attestationSummarySchema.optional(),
});
export type Completion = z.infer<typeof completionSchema>;

export const modelSchema = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: z.number().int(),
  owned_by: z.string(),
  /** Manifest hash: the model id in tickets and attestations. */
  manifest_hash: z.string(),
  num_layers: z.number().int(),
  dtype: z.string(),
  /** Agents currently able to serve some span of it. */
  agents: z.number().int().nonnegative(),
});
export const modelListSchema = z.object({ object: z.literal('list'), data: z.array(modelSchema) });
export type ModelList = z.infer<typeof modelListSchema>;

export const publicAgentSchema = z.object({
  id: z.string(),
  public_key: z.string(),
  status: z.string(),
  price: z.number().nonnegative(),
  reputation: z.number(),
  spans: z.array(z.object({ model_id: z.string(), layers: z.tuple([z.number().int(), z.number().int()]) })),
  last_heartbeat_at: z.string().nullable(),
  queue_depth: z.number().nullable(),
  ttft_ms: z.number().nullable(),
  per_token_ms: z.number().nullable(),
});
export const publicPoolSchema = z.object({
  id: z.string(),
  name: z.string(),
  region: z.string(),
  agents: z.array(publicAgentSchema),
});
export const poolListSchema = z.object({ object: z.literal('list'), data: z.array(publicPoolSchema) });
export type PoolList = z.infer<typeof poolListSchema>;

/**
 * What the re-execution checks found about a job (docs/trust.md §7), as its owner sees it.
 *
 * - `unchecked`: no check, and none will come (not sampled, checks off, or the check window passed);
 * - `pending`: no verdict yet, and one may still come (the job finished less than the check window ago);
 * - `pass` / `inconclusive`: an independent checker's verdict;
 * - `fail`: a checker's re-execution disagrees with the answer (`blame` names the hop when it is known);
 * - `upheld` / `dismissed` / `voided`: how the dispute over a failure ended (upheld: the job was bad).
 *
 * A job found bad (`fail` naming a hop, or `upheld`) is not charged: `refunded_micro_usd` is what
 * was handed back to the key's spend, once.
 */
export const JOB_CHECK_STATUSES = ['unchecked', 'pending', 'pass', 'fail', 'inconclusive', 'upheld', 'dismissed', 'voided'] as const;
export const jobCheckSchema = z.object({
  status: z.enum(JOB_CHECK_STATUSES),
  /** The failing verdict the job was found bad on (`fail`, `upheld`). */
  verdict: z
    .object({
      /** E.g. `hidden_mismatch`, `sampling_mismatch`, `hop_output_mismatch` (protocol/check.ts `CheckFailure`). */
      reason: z.string(),
      detail: z.string(),
      /** First generation step that failed, when one did. */
      step: z.number().int().nonnegative().optional(),
    })
    .optional(),
  /** The hop found at fault: its attempt (index into `attempts`), its place in that attempt's route, its agent. */
  blame: z.object({ attempt: z.number().int().nonnegative(), hop: z.number().int().nonnegative(), agent_id: z.string() }).optional(),
  /** The dispute a failure naming a hop opened. */
  dispute: z.object({ id: z.string(), status: z.enum(['open', 'upheld', 'dismissed', 'voided']) }).optional(),
  /** Micro-USD handed back to the key's spend because the job was found bad (absent: nothing refunded). */
  refunded_micro_usd: z.number().int().nonnegative().optional(),
});
export type JobCheck = z.infer<typeof jobCheckSchema>;

/** GET /v1/jobs/:id/attestation: everything a client needs to re-verify a response itself. */
export const jobAttestationSchema = z.object({
  job_id: z.string(),
  model_id: z.string(),
  num_layers: z.number().int().positive(),
  edge_key_id: z.string(),
  edge_public_key: z.string(),
  /** One entry per attempt (failover): the ticket and its verified chunks. */
  attempts: z.array(
    z.object({
      ticket: signedTicketSchema,
      chunks: z.array(z.array(signedAttestationSchema)),
      outcome: z.enum(['completed', 'failed', 'cancelled']),
    }),
  ),
  token_ids: z.array(z.number().int()),
  /** What the re-execution checks found (the edge always sends it; optional for older edges). */
  check: jobCheckSchema.optional(),
});
export type JobAttestation = z.infer<typeof jobAttestationSchema>;
