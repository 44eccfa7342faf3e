/**
 * One completion request being served, as serve.ts hands it to the answer it builds (answer.ts
 * collected, sse.ts streamed): its generation, and the text side (stop strings, streaming
 * decode, echo), usage and the settlement of its token reservation.
 *
 * @example
 * return body.stream ? streamAnswer(job) : collectAnswer(job);
 */
import type { EdgeDeps } from '../deps.js';
import type { Generation } from '../dispatch/generate.js';
import type { CompletionInput } from './serve.js';

export interface ServingJob {
  deps: EdgeDeps;
  input: CompletionInput;
  gen: Generation;
  requestId: string;
  /** Aborts the generation (the client went away). */
  abort: AbortController;
  /** The answer's `created` (epoch seconds). */
  created: number;
  /** Replaces the token reservation by what the job used (nothing when it failed); off the response path. */
  settle(): void;
  usage(): { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  /** The prompt echoed first (/v1/completions `echo`), else ''. */
  echo: string;
  /** Turns verified tokens into text; `stopped` when a stop string ended the answer. */
  consume(ids: number[]): { text: string; stopped: boolean };
  /** What the decoder and the stop scanner still hold, at the end. */
  tail(): string;
}
