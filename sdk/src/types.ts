/**
 * Request and response types, inferred from the same zod schemas the edge validates with
 * (protocol/api.ts): request bodies are the schemas' input side (defaults optional), responses
 * their output side.
 *
 * @example
 * const body: ChatCompletionCreateParams = { model: 'layernet-llama-tiny-fp32-seed0', messages: [{ role: 'user', content: 'hi' }], route: { sort: 'latency' } };
 */
import type { z } from 'zod';
import type {
  chatCompletionRequestSchema,
  completionRequestSchema,
  JobCheck,
  routePreferencesSchema,
} from '../../protocol/api.js';

export type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatMessage,
  Completion,
  ModelList,
  PoolList,
  JobAttestation,
  JobCheck,
  RouteSummary,
  AttestationSummary,
} from '../../protocol/api.js';
export type { SignedTicket, JobTicket } from '../../protocol/ticket.js';
export type { SignedAttestation, Attestation, ChainFailure } from '../../protocol/attestation.js';

/** Route preferences (`route` in a request body, or a client/request default). */
export type RoutePreferencesParam = z.input<typeof routePreferencesSchema>;

export type ChatCompletionCreateParams = z.input<typeof chatCompletionRequestSchema>;
export type ChatCompletionCreateParamsStreaming = ChatCompletionCreateParams & { stream: true };
export type ChatCompletionCreateParamsNonStreaming = ChatCompletionCreateParams & { stream?: false | null };

export type CompletionCreateParams = z.input<typeof completionRequestSchema>;
export type CompletionCreateParamsStreaming = CompletionCreateParams & { stream: true };
export type CompletionCreateParamsNonStreaming = CompletionCreateParams & { stream?: false | null };

export type Usage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };

/** What `verify` checked, attached to verified responses as `verification`. */
export interface VerificationReport {
  jobId: string;
  verified: true;
  /** Route attempts (failover) whose chains were re-checked. */
  attempts: number;
  /** Attestation chunks re-checked (each covers one or more generation steps). */
  chunks: number;
  /** The completion's tokens, as attested by the last hop of each chunk (stop token excluded). */
  tokenIds: number[];
  /** Hash of the last attestation of the final attempt (matches `attestation.chain_head`). */
  chainHead: string | null;
  /** Edge key that signed the tickets. */
  edgeKeyId: string;
  /** Agents whose signatures were checked against their registered keys. */
  agents: string[];
  /**
   * What the re-execution checks had found when the record was read (absent from older edges).
   * Right after an answer this is usually `pending`: a check lands within ~30 s; ask again with
   * `client.jobs.check(jobId, { waitMs })`. A job found bad throws `JobFoundBadError` instead.
   */
  check?: JobCheck;
}

/** Options of `verify` (true = all defaults). */
export interface VerifyOptions {
  /**
   * Turns token ids into text. When given, the answer's text must be a prefix of the decoded
   * verified tokens (a stop string may cut it short). Without it the SDK checks the token ids
   * and counts, not the text: the text is decoded by the edge.
   */
  decode?: (ids: readonly number[]) => string;
  /** Agent keys pinned out of band (agent id -> raw base64url Ed25519 key); used instead of the registry for these ids. */
  agentKeys?: Record<string, string>;
  /** Edge ticket keys pinned out of band (key id -> raw base64url Ed25519 key); skips GET /v1/edge/keys. */
  edgeKeys?: Record<string, string>;
  /** How long to keep asking for the job record, which the edge writes just after answering (ms, default 5000). */
  recordWaitMs?: number;
}

export interface RequestOptions {
  /** Aborts the request (an {@link APIUserAbortError} is thrown). */
  signal?: AbortSignal;
  /** Milliseconds until the response headers (and, without streaming, the whole body) arrive. */
  timeout?: number;
  maxRetries?: number;
  headers?: Record<string, string>;
  /** Route preferences used when the body has no `route`. */
  route?: RoutePreferencesParam;
  /** Re-verify the job's attestation chain before returning (see README: verification). */
  verify?: boolean | VerifyOptions;
  /**
   * Streams with verify: 'end' (default) yields tokens as they arrive and throws
   * AttestationError at the end if the chain does not check out (the tokens were already
   * seen); 'buffer' yields nothing until the whole answer is verified.
   */
  verifyStream?: 'end' | 'buffer';
}
