/**
 * `client.jobs`: a job's attestation record, its check outcome, and client-side re-verification.
 */
import type { ChatCompletion, Completion, JobAttestation, JobCheck, RequestOptions, VerificationReport, VerifyOptions } from '../types.js';
import { jobAttestationSchema } from '../schemas.js';
import type { LayerNet } from '../client.js';
import { JobFoundBadError, isJobFoundBad } from '../errors.js';
import { Stream } from '../stream.js';
import { jobIdOf, requireJobId } from './job-id.js';

export interface JobCheckParams {
  /** Read the record again while the outcome is `pending`, for up to this long (ms, default 0: once). */
  waitMs?: number;
  /** Throw {@link JobFoundBadError} when the job was found bad (`fail` or `upheld`). */
  throwIfBad?: boolean;
}

export class Jobs {
  constructor(private readonly client: LayerNet) {}

  /** The full attestation record of one of your jobs: tickets and signed chunks of every attempt. */
  attestation(jobId: string, options: RequestOptions = {}): Promise<JobAttestation> {
    return this.client.requestJson({ method: 'GET', path: `/v1/jobs/${encodeURIComponent(jobId)}/attestation` }, options, jobAttestationSchema);
  }

  /**
   * What the edge's re-execution checks found about one of your jobs (the record's `check`):
   * `unchecked`, `pending`, `pass`, `inconclusive`, `fail` (with the failing verdict and the hop
   * blamed), or how its dispute ended (`upheld`, `dismissed`, `voided`); `refunded_micro_usd`
   * when the job was found bad and not charged. Checks run after the answer and land within
   * about 30 s: with `waitMs` the record is read again while the outcome is `pending`, for up to
   * that long. With `throwIfBad` a job found bad (`fail` or `upheld`) throws {@link JobFoundBadError}.
   *
   * @example
   * const check = await client.jobs.check(completion.attestation.job_id, { waitMs: 30_000 });
   * if (check.status === 'fail' || check.status === 'upheld') console.log('found bad at hop', check.blame?.hop, 'refunded', check.refunded_micro_usd);
   */
  async check(jobId: string, params: JobCheckParams = {}, options: RequestOptions = {}): Promise<JobCheck> {
    const waitMs = params.waitMs ?? 0;
    const started = this.client.now();
    let delay = 1_000;
    for (;;) {
      const record = await this.attestation(jobId, options);
      // An edge that predates check outcomes says nothing: nothing will come.
      const check: JobCheck = record.check ?? { status: 'unchecked' };
      if (check.status !== 'pending' || this.client.now() - started >= waitMs) {
        if (params.throwIfBad && isJobFoundBad(check)) throw new JobFoundBadError(jobId, check);
        return check;
      }
      await this.client.sleep(Math.min(delay, Math.max(0, waitMs - (this.client.now() - started))), options.signal);
      delay = Math.min(delay * 2, 5_000);
    }
  }

  /**
   * Re-verifies a finished job (by id, or a completion / finished stream) against the registry's
   * published keys. Throws {@link AttestationError} on any mismatch, and {@link JobFoundBadError}
   * when a re-execution check found the job bad.
   *
   * @example
   * const report = await client.jobs.verify(completion);
   */
  verify(job: string | ChatCompletion | Completion | Stream<unknown>, options: VerifyOptions = {}): Promise<VerificationReport> {
    if (typeof job === 'string') return this.client.verifyJob({ jobId: job }, options);
    if (job instanceof Stream) {
      return this.client.verifyJob({ jobId: requireJobId(job.jobId), summary: job.attestation, route: job.route, usage: job.finalUsage, text: job.text }, options);
    }
    const text = job.object === 'chat.completion' ? job.choices[0]?.message.content : job.choices[0]?.text;
    return this.client.verifyJob(
      { jobId: requireJobId(jobIdOf(job)), summary: job.attestation ?? null, route: job.route ?? null, usage: job.usage ?? null, text: text ?? null },
      options,
    );
  }
}
