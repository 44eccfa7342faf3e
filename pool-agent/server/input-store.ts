/**
 * What each hop committed to for recent jobs (token ids fed at the head hop, activation bytes
 * received and sent by the others), kept for a window so a re-execution check can re-run one
 * hop's span on its committed input. Bounded by age, job count and total bytes; the oldest job
 * goes first.
 *
 * @example
 * store.record(jobId, hop, { steps: [0, 1], inputTokenIds: [1, 2, 3] });
 * store.get(jobId, hop); // chunks in order, or undefined once evicted
 */
export interface CommittedChunk {
  steps: [number, number];
  /** Hop 0: the token ids fed at these steps. */
  inputTokenIds?: number[];
  /** Hops > 0: the activation bytes received. */
  input?: Uint8Array;
  /** Hops before the last: the activation bytes sent on. */
  output?: Uint8Array;
}

export interface CommittedJob {
  jobId: string;
  hop: number;
  dtype: 'float32' | 'float16';
  hiddenSize: number;
  chunks: CommittedChunk[];
  bytes: number;
  createdAt: number;
}

export interface InputStoreLimits {
  ttlMs: number;
  maxJobs: number;
  maxBytes: number;
}

export const DEFAULT_INPUT_STORE_LIMITS: InputStoreLimits = { ttlMs: 10 * 60_000, maxJobs: 512, maxBytes: 256 * 1024 * 1024 };

function chunkBytes(c: CommittedChunk): number {
  return (c.inputTokenIds?.length ?? 0) * 4 + (c.input?.byteLength ?? 0) + (c.output?.byteLength ?? 0) + 32;
}

export class InputStore {
  /** Insertion order = age order. */
  private readonly jobs = new Map<string, CommittedJob>();
  private total = 0;

  constructor(
    readonly limits: InputStoreLimits = DEFAULT_INPUT_STORE_LIMITS,
    private readonly clock: () => number = Date.now,
  ) {}

  get bytes(): number {
    return this.total;
  }

  get size(): number {
    return this.jobs.size;
  }

  private key(jobId: string, hop: number): string {
    return `${hop}:${jobId}`;
  }

  record(jobId: string, hop: number, meta: { dtype: 'float32' | 'float16'; hiddenSize: number }, chunk: CommittedChunk): void {
    const key = this.key(jobId, hop);
    let job = this.jobs.get(key);
    if (!job) {
      job = { jobId, hop, dtype: meta.dtype, hiddenSize: meta.hiddenSize, chunks: [], bytes: 0, createdAt: this.clock() };
      this.jobs.set(key, job);
    }
    // Copies: the caller's buffers may be reused or views of a larger one.
    const stored: CommittedChunk = { steps: [chunk.steps[0], chunk.steps[1]] };
    if (chunk.inputTokenIds) stored.inputTokenIds = [...chunk.inputTokenIds];
    if (chunk.input) stored.input = chunk.input.slice();
    if (chunk.output) stored.output = chunk.output.slice();
    const size = chunkBytes(stored);
    if (size > this.limits.maxBytes) return;
    job.chunks.push(stored);
    job.bytes += size;
    this.total += size;
    this.evict();
  }

  get(jobId: string, hop: number): CommittedJob | undefined {
    this.evict();
    return this.jobs.get(this.key(jobId, hop));
  }

  private drop(key: string): void {
    const job = this.jobs.get(key);
    if (!job) return;
    this.jobs.delete(key);
    this.total -= job.bytes;
  }

  evict(now = this.clock()): void {
    for (const [key, job] of this.jobs) {
      const tooOld = now - job.createdAt > this.limits.ttlMs;
      if (!tooOld && this.jobs.size <= this.limits.maxJobs && this.total <= this.limits.maxBytes) break;
      this.drop(key);
    }
  }
}
