/**
 * How much of this isolate's recent traffic went to routes with an unstaked hop: the input of
 * `unstakedRouteAllowed` (reputation.ts). A sliding minute in six 10 s buckets; per isolate, so
 * the share is enforced approximately across the fleet (each isolate holds its own share).
 *
 * @example
 * const window = new UnstakedTrafficWindow();
 * if (unstakedRouteAllowed(window.counts(now), policy)) window.record(false, now);
 */
const BUCKET_MS = 10_000;
const BUCKETS = 6;

export class UnstakedTrafficWindow {
  private readonly total = new Array<number>(BUCKETS).fill(0);
  private readonly unstaked = new Array<number>(BUCKETS).fill(0);
  private readonly epochs = new Array<number>(BUCKETS).fill(-1);

  private slot(now: number): number {
    const epoch = Math.floor(now / BUCKET_MS);
    const i = epoch % BUCKETS;
    if (this.epochs[i] !== epoch) {
      this.epochs[i] = epoch;
      this.total[i] = 0;
      this.unstaked[i] = 0;
    }
    return i;
  }

  /** One request: `staked` false when its route has an unstaked hop (refusals count as staked demand). */
  record(staked: boolean, now: number): void {
    const i = this.slot(now);
    this.total[i]!++;
    if (!staked) this.unstaked[i]!++;
  }

  counts(now: number): { unstakedJobs: number; totalJobs: number } {
    const current = Math.floor(now / BUCKET_MS);
    let totalJobs = 0;
    let unstakedJobs = 0;
    for (let i = 0; i < BUCKETS; i++) {
      if (this.epochs[i]! > current - BUCKETS) {
        totalJobs += this.total[i]!;
        unstakedJobs += this.unstaked[i]!;
      }
    }
    return { unstakedJobs, totalJobs };
  }
}
