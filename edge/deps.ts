/**
 * What createApp needs from the outside world. Every external dependency is an interface: the
 * Workers entry wires the real ones (postgres store, fetch, the llama tokenizer for built-in
 * models), unit tests wire doubles (memory store, a fake agent transport, a byte tokenizer).
 */
import type { RegistryStore, RouteCandidate, ModelRecord, ApiKeyRecord, ModelSummary } from '../db/registry-contract.js';
import type { EdgeConfig } from './config.js';
import type { TtlCache } from './cache.js';
import type { UnstakedTrafficWindow } from './trust/unstaked-window.js';
import type { CheckSettings } from './checks/settings.js';

export interface Clock {
  now(): number;
}

/** `fetch`-shaped call to an agent (Workers: the global fetch). */
export type AgentTransport = (url: string, init: RequestInit) => Promise<Response>;

export interface EdgeSigningKey {
  /** Published at /v1/edge/keys and written into tickets (`edgeKeyId`). */
  id: string;
  /** Raw Ed25519 public key, base64url. */
  publicKey: string;
  privateKey: CryptoKey;
}

/** Incremental detokenizer: returns the text that became complete with each token. */
export interface TextDecoderStream {
  push(id: number): string;
  flush(): string;
}

/** An assistant's tool call as chat templates read it (`arguments` parsed from JSON when it is an object). */
export interface EdgeToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: unknown };
}

/** A chat message as the chat template gets it (OpenAI's fields, content flattened to text). */
export interface EdgeChatMessage {
  role: string;
  content: string;
  name?: string;
  tool_call_id?: string;
  tool_calls?: EdgeToolCall[];
}

/** Tokenization and chat template of one model, as its manifest describes them. */
export interface EdgeTokenizer {
  /**
   * Prompt ids of a chat (chat template applied with the generation prompt, special tokens as the
   * template writes them). `tools` go to the template as given; a template without tools ignores them.
   */
  encodeChat(messages: readonly EdgeChatMessage[], options?: { tools?: readonly unknown[] }): number[];
  /** Prompt ids of a plain completion prompt (BOS and other special tokens as the tokenizer adds them). */
  encodePrompt(text: string): number[];
  /** Text of generated ids (special tokens skipped). */
  decode(ids: readonly number[]): string;
  streamingDecoder(): TextDecoderStream;
  /** Every id that ends a generation (the manifest's `stopTokenIds`). */
  eosIds: readonly number[];
}

/**
 * The tokenizer of each model (edge/text/tokenizer-provider.ts). The store is the request's own
 * (Workers: a postgres.js client serves only the request that opened it); what it loads is kept
 * per isolate.
 */
export interface TokenizerProvider {
  /** Throws ApiError (503 `no_route`) while the model's tokenizer files are not all in the registry. */
  forModel(model: ModelRecord, store: Pick<RegistryStore, 'listModelFiles' | 'getModelFile'>): Promise<EdgeTokenizer>;
  /** Forgets what this isolate holds for the model (an upload may have completed it). */
  forget(modelId: string): void;
}

export interface EdgeCaches {
  keys: TtlCache<ApiKeyRecord | null>;
  models: TtlCache<ModelRecord | null>;
  candidates: TtlCache<RouteCandidate[]>;
  /** GET /v1/models answers: counting live agents per model is a full aggregate, so share it for a short TTL. */
  modelList: TtlCache<ModelSummary[]>;
  /** Recent traffic to routes with an unstaked hop, for `unstakedTrafficShare`. */
  unstakedTraffic: UnstakedTrafficWindow;
}

export interface EdgeDeps {
  store: RegistryStore;
  clock: Clock;
  signingKey: EdgeSigningKey;
  transport: AgentTransport;
  /** Tokenizer per model: the built-in kind's, or one built from the model's uploaded files. */
  tokenizers: TokenizerProvider;
  config: EdgeConfig;
  caches: EdgeCaches;
  /** Uniform in [0, 1): exploration and power of two choices (injectable for tests). */
  random: () => number;
  /**
   * Keeps background work (observations, job records, cancels) alive after the response.
   * The app uses the Workers execution context when there is one, else this.
   */
  waitUntil: (work: Promise<unknown>) => void;
  /** Structured log line; never receives secrets. */
  log: (entry: Record<string, unknown>) => void;
  /** Re-execution checks (edge/checks/run-checks.ts); absent or without a key: off. */
  checks?: CheckSettings | null;
}

export interface AuthContext {
  apiKeyId: string;
  accountId: string;
  key: ApiKeyRecord;
}

/** Hono environment of the edge app. */
export interface AppEnv {
  /**
   * What a runtime entry may pass as `app.fetch(req, bindings, ctx)`: a store bound to this
   * request (Workers: a postgres.js client may only be used by the request that opened it).
   */
  Bindings: { store?: RegistryStore } | undefined;
  Variables: {
    requestId: string;
    /** The app's deps, with `waitUntil` bound to this request's execution context. */
    deps: EdgeDeps;
    auth: AuthContext;
  };
}
