/**
 * Client jobs on a test network (network.ts) and what the registry recorded of their checks: a
 * chat completion pinned to one region's routes (region preference without fallbacks), the job's
 * row and its agents' rows, and polling until its check reaches a status (checks run after the
 * response). The integration suites share these, so each polls and reports a timeout alike.
 *
 * @example
 * const job = await chatJob(net, { region: 'r-2h', seed: 3 });
 * if (job.ok) console.log(job.route, await settledCheck(net, job.jobId));
 */
import { eq } from 'drizzle-orm';
import { agents, jobs } from '../../db/schema/index.js';
import type { TestNetwork } from './network.js';

export interface ChatOptions {
  /** Only routes whose every hop is in this region (no fallback elsewhere). */
  region?: string;
  prompt?: string;
  maxTokens?: number;
  seed?: number;
  temperature?: number;
}

export type ChatJob =
  | { ok: true; jobId: string; route: string[]; sentAt: number; ms: number }
  | { ok: false; status: number; code: string | undefined; message: string; sentAt: number; ms: number };

/** One chat completion (not streamed); a refusal is returned, not thrown. */
export async function chatJob(net: TestNetwork, opts: ChatOptions = {}): Promise<ChatJob> {
  const sentAt = Date.now();
  const t = performance.now();
  const res = await fetch(`${net.edgeUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: net.modelName,
      messages: [{ role: 'user', content: opts.prompt ?? 'Say something about layered networks' }],
      max_tokens: opts.maxTokens ?? 12,
      seed: opts.seed ?? 7,
      temperature: opts.temperature ?? 0.8,
      route: { sort: 'price', ...(opts.region ? { region: opts.region, allow_fallbacks: false } : {}) },
    }),
  });
  const text = await res.text();
  const ms = performance.now() - t;
  if (res.status !== 200) {
    let code: string | undefined;
    let message = text.slice(0, 500);
    try {
      const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
      code = e?.code;
      message = e?.message ?? message;
    } catch {
      // Not the error envelope: keep the text.
    }
    return { ok: false, status: res.status, code, message, sentAt, ms };
  }
  const body = JSON.parse(text) as { route: { hops: { agent_id: string }[] }; attestation: { job_id: string } };
  return { ok: true, jobId: body.attestation.job_id, route: body.route.hops.map((h) => h.agent_id), sentAt, ms };
}

/** The edge's last log lines, for an error that needs to say what the edge was doing. */
const edgeTail = (net: TestNetwork) => `edge: ${net.edgeLogs.slice(-40).join('\n')}`;

export type ServedJob = Extract<ChatJob, { ok: true }>;

/** `chatJob` that must be served: a refusal throws, naming it and the edge's last log lines. */
export async function servedJob(net: TestNetwork, opts: ChatOptions = {}): Promise<ServedJob> {
  const job = await chatJob(net, opts);
  if (!job.ok) throw new Error(`the job was refused: ${job.status} ${job.code} ${job.message}\n${edgeTail(net)}`);
  return job;
}

export type JobRow = typeof jobs.$inferSelect;
export type AgentRow = typeof agents.$inferSelect;

export async function jobRow(net: TestNetwork, jobId: string): Promise<JobRow | undefined> {
  return (await net.registry.db.select().from(jobs).where(eq(jobs.id, jobId)))[0];
}

/** A registered agent's row (status, reputation, check counters); throws when there is none. */
export async function agentRow(net: TestNetwork, agentId: string): Promise<AgentRow> {
  const row = (await net.registry.db.select().from(agents).where(eq(agents.id, agentId)))[0];
  if (!row) throw new Error(`no agent ${agentId} in the registry`);
  return row;
}

/** Check statuses after which nothing more happens to the job's check. */
export const FINAL_CHECK = new Set(['pass', 'upheld', 'dismissed', 'voided']);

export interface UntilOptions {
  /** Default 60 s. */
  timeoutMs?: number;
  /** The network whose edge log tail the timeout error carries. */
  net?: TestNetwork;
}

/** Polls `read` every 250 ms until it gives a value, or throws after `timeoutMs` naming `what`. */
export async function until<T>(what: string, read: () => Promise<T | null | undefined>, opts: UntilOptions = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    const v = await read();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${opts.net ? `\n${edgeTail(opts.net)}` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export type CheckedJobRow = JobRow & { checkStatus: NonNullable<JobRow['checkStatus']> };

/** Waits until the job has a check status that `wanted` accepts and returns the job row. */
export function checkStatus(net: TestNetwork, jobId: string, wanted: (status: CheckedJobRow['checkStatus']) => boolean, timeoutMs = 60_000): Promise<CheckedJobRow> {
  return until(
    `job ${jobId}'s check status`,
    async () => {
      const row = await jobRow(net, jobId);
      return row?.checkStatus && wanted(row.checkStatus) ? (row as CheckedJobRow) : null;
    },
    { timeoutMs, net },
  );
}

/**
 * `checkStatus`'s status; when it times out, the error carries the job's check record and the
 * last `lines` log lines of each of `agents` (the checkers: their logs say why).
 */
export function checkStatusOrExplain(
  net: TestNetwork,
  jobId: string,
  wanted: (status: CheckedJobRow['checkStatus']) => boolean,
  agents: readonly { name: string; logs: string[] }[],
  lines = 6,
): Promise<CheckedJobRow['checkStatus']> {
  return checkStatus(net, jobId, wanted)
    .then((row) => row.checkStatus)
    .catch(async (err: Error) => {
      const logs = agents.map((a) => `[${a.name}] ${a.logs.slice(-lines).join('\n')}`).join('\n');
      throw new Error(`${err.message}\njob checks: ${JSON.stringify((await jobRow(net, jobId))?.checks).slice(0, 6000)}\n${logs}`);
    });
}

/**
 * Waits until the job's check has settled and returns the job row: a `FINAL_CHECK` status at
 * once; `fail` (no hop named, or a dispute left open) or `inconclusive` (another checker may
 * still be asked) once unchanged for `quietMs` (default: the edge's 25 s check budget). A job
 * that is never checked times out: call it for jobs that must be.
 */
export function settledCheck(net: TestNetwork, jobId: string, timeoutMs = 60_000, quietMs = 26_000): Promise<JobRow> {
  let last: { status: string; since: number } | null = null;
  let lastEntries = 0;
  return until(
    `job ${jobId}'s check to settle`,
    async () => {
      const row = await jobRow(net, jobId);
      const status = row?.checkStatus;
      if (!row || !status) return null;
      if (FINAL_CHECK.has(status)) return row;
      if (last?.status !== status || (row.checks as unknown[]).length !== lastEntries) last = { status, since: Date.now() };
      lastEntries = (row.checks as unknown[]).length;
      return Date.now() - last.since >= quietMs ? row : null;
    },
    { timeoutMs },
  );
}
