/**
 * The contract between the model runtime (onnxruntime-node sessions over layer spans) and the
 * agent server (jobs, chains, attestations). The server depends only on this file; tests of the
 * server may use a double that implements it.
 */
import type { Manifest } from '../../protocol/manifest.js';

export type ExecutionProvider = 'cpu' | 'cuda';

export interface RuntimeOptions {
  /** 'auto' picks CUDA when the host has it and the provider library loads, else CPU. */
  provider?: 'auto' | ExecutionProvider;
  /** onnxruntime intra-op threads (0 or undefined: onnxruntime's default). */
  intraOpThreads?: number;
  interOpThreads?: number;
  /** CUDA device index when the provider is CUDA. */
  deviceId?: number;
}

/** What a span receives for T new positions: token ids (span starts at layer 0) or the previous span's hidden states [1, T, hidden]. */
export type SpanInput =
  | { kind: 'tokens'; ids: Int32Array }
  | { kind: 'hidden'; data: Float32Array | Uint16Array; seqLen: number };

/**
 * What a span returns: hidden states for the next span, or (last span) logits and the final
 * hidden states (after the final norm, one row per position; TOPLOC commits to these).
 */
export type SpanOutput =
  | { kind: 'hidden'; data: Float32Array | Uint16Array; seqLen: number }
  | {
      kind: 'logits';
      /** [logitsKept, vocab] row-major, the last `logitsKept` positions (default 1). */
      logits: Float32Array;
      logitsKept: number;
      /** [seqLen, hidden] row-major, float32 even when the model is float16. */
      finalHidden: Float32Array;
      seqLen: number;
    };

export interface ForwardOptions {
  /** Last span only: how many trailing positions get logits (default 1; seqLen for teacher-forced checks). */
  logitsToKeep?: number;
}

export interface OpenSessionOptions {
  /** Positions the session will hold at most (prompt + max tokens); bounds its cache buffers. */
  maxPositions?: number;
}

/** A KV-cache session over one span: positions continue from `length`. */
export interface SpanSession {
  /** Positions already in the KV cache. */
  readonly length: number;
  /** Bytes the KV cache holds now (for the 'append' layout, its buffers' capacity). */
  readonly kvBytes: number;
  /** Runs T new positions (prefill T > 1, decode T = 1) and appends them to the KV cache. */
  forward(input: SpanInput, options?: ForwardOptions): Promise<SpanOutput>;
  /** Frees the KV cache; the session cannot be used afterwards. */
  dispose(): void;
}

/** A contiguous span of a model's layers loaded on one device. */
export interface LoadedSpan {
  readonly modelId: string;
  readonly manifest: Manifest;
  /** [start, end) layer indices. */
  readonly layers: readonly [number, number];
  /** Holds the token embedding (layers[0] === 0). */
  readonly first: boolean;
  /** Holds the final norm and LM head (layers[1] === numLayers). */
  readonly last: boolean;
  readonly provider: ExecutionProvider;
  /** KV-cache bytes one position costs in this span (all its layers, keys and values). */
  readonly kvBytesPerToken: number;
  openSession(options?: OpenSessionOptions): SpanSession;
  close(): Promise<void>;
}
