/**
 * Cheaters that cheat on some of their jobs only (test-only, with `partial-cheating-serve/`): a
 * `pool-agent serve` process whose span computes honestly or as its `Cheat` says (cheating-span.ts),
 * job by job. Which jobs: the n-th job it serves (distinct job ids, in the order their sessions
 * open) cheats iff n > `afterJobs` and `cheatsOnJob(jobId, rate)`, a hash of the job id, so a
 * test that sees the job ids knows which jobs were cheated on, and every hop and attempt of the
 * job agrees. Nothing here is visible to the edge: it cannot predict the choice, as it cannot
 * for a real cheater.
 *
 * - `LAYERNET_TEST_CHEAT_RATE` (0..1, default 1): the share of jobs cheated on.
 * - `LAYERNET_TEST_CHEAT_AFTER` (default 0): jobs served honestly first (a "sleeper" that builds
 *   reputation and leaves probation before it cheats).
 *
 * @example
 * const span = scheduledCheatingSpan(honest, cheating, { rate: 0.1, afterJobs: 0 });
 * cheatsOnJob(jobId, 0.1); // what the span did for that job (when n > afterJobs)
 */
import { createHash } from 'node:crypto';
import type { LoadedSpan } from '../../pool-agent/runtime/types.js';

export const CHEAT_RATE_ENV = 'LAYERNET_TEST_CHEAT_RATE';
export const CHEAT_AFTER_ENV = 'LAYERNET_TEST_CHEAT_AFTER';

export interface CheatSchedule {
  /** Share of jobs cheated on, in [0, 1]. */
  rate: number;
  /** Jobs served honestly before any cheat. */
  afterJobs: number;
}

/** The schedule from the environment; throws on a malformed value (a test misconfigured fails loudly). */
export function parseSchedule(env: NodeJS.ProcessEnv): CheatSchedule {
  const rate = env[CHEAT_RATE_ENV] === undefined ? 1 : Number(env[CHEAT_RATE_ENV]);
  const afterJobs = env[CHEAT_AFTER_ENV] === undefined ? 0 : Number(env[CHEAT_AFTER_ENV]);
  if (!(rate >= 0 && rate <= 1)) throw new Error(`${CHEAT_RATE_ENV} must be in [0, 1], got ${env[CHEAT_RATE_ENV]}`);
  if (!Number.isSafeInteger(afterJobs) || afterJobs < 0) throw new Error(`${CHEAT_AFTER_ENV} must be a whole number, got ${env[CHEAT_AFTER_ENV]}`);
  return { rate, afterJobs };
}

/** A uniform draw in [0, 1) from the job id (53 bits of SHA-256), compared with `rate`. */
export function cheatsOnJob(jobId: string, rate: number): boolean {
  if (rate >= 1) return true;
  if (!(rate > 0)) return false;
  const h = createHash('sha256').update(`layernet.test.cheat/1\n${jobId}`).digest();
  let x = 0;
  for (let i = 0; i < 7; i++) x = x * 256 + h[i]!;
  return Math.floor(x / 8) / 2 ** 53 < rate;
}

/** Whether the n-th job (1-based) of a cheater on `schedule`, of id `jobId`, is cheated on. */
export function cheatedJob(schedule: CheatSchedule, n: number, jobId: string): boolean {
  return n > schedule.afterJobs && cheatsOnJob(jobId, schedule.rate);
}

let opening: string | undefined;

/**
 * Runs `create` (a span session's constructor) as the session of job `jobId`: the agent's session
 * manager opens each job's session synchronously, so the span learns whose session it opens.
 */
export function openingJob<T>(jobId: string, create: () => T): T {
  const before = opening;
  opening = jobId;
  try {
    return create();
  } finally {
    opening = before;
  }
}

/**
 * A span that opens each job's session on `honest` or on `cheating` (both claim the same model
 * and layers) as `schedule` says. A session opened outside a job (the agent's start-up bench) is
 * honest and not counted.
 */
export function scheduledCheatingSpan(honest: LoadedSpan, cheating: LoadedSpan, schedule: CheatSchedule, close: () => Promise<void>): LoadedSpan {
  /** Each job's place in the order its session first opened (1-based). */
  const order = new Map<string, number>();
  return {
    modelId: honest.modelId,
    manifest: honest.manifest,
    layers: honest.layers,
    first: honest.first,
    last: honest.last,
    provider: honest.provider,
    kvBytesPerToken: honest.kvBytesPerToken,
    openSession(options) {
      const jobId = opening;
      if (jobId === undefined) return honest.openSession(options);
      if (!order.has(jobId)) order.set(jobId, order.size + 1);
      return (cheatedJob(schedule, order.get(jobId)!, jobId) ? cheating : honest).openSession(options);
    },
    close,
  };
}
