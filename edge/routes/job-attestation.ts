/**
 * GET /v1/jobs/:id/attestation: the full attestation chain of one of the caller's jobs, and what
 * the re-execution checks found about it (`check`, edge/checks/outcome.ts).
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { ApiError } from '../../protocol/errors.js';
import type { JobAttestation } from '../../protocol/api.js';
import { requireScope } from '../auth/middleware.js';
import { CHECK_WINDOW_MS, MAX_JOB_DISPUTES, jobCheckOutcome } from '../checks/outcome.js';

export function registerJobAttestation(app: Hono<AppEnv>): void {
  app.get('/v1/jobs/:id/attestation', requireScope('inference'), async (c) => {
    const deps = c.get('deps');
    const id = c.req.param('id');
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new ApiError('not_found', 'no such job');
    const job = await deps.store.getJob(id, c.get('auth').accountId);
    if (!job) throw new ApiError('not_found', 'no such job');
    const [model, disputes] = await Promise.all([deps.store.getModel(job.modelId), job.checkStatus ? deps.store.listJobDisputes(job.id, MAX_JOB_DISPUTES) : []]);
    const windowMs = deps.checks?.budgetMs === undefined ? CHECK_WINDOW_MS : deps.checks.budgetMs + 5_000;
    const body: JobAttestation = {
      job_id: job.id,
      model_id: job.modelId,
      num_layers: model?.numLayers ?? 1,
      edge_key_id: deps.signingKey.id,
      edge_public_key: deps.signingKey.publicKey,
      attempts: job.attempts.map((a) => ({ ticket: a.ticket, chunks: a.chunks, outcome: a.outcome })),
      token_ids: job.tokenIds,
      check: jobCheckOutcome(job, disputes, { checksOn: !!deps.checks?.key, now: deps.clock.now(), windowMs }),
    };
    return c.json(body);
  });
}
