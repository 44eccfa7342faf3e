/**
 * Signed heartbeats to the edge (protocol/owner-api.ts): load and free KV every interval. `seq`
 * is strictly increasing across restarts: persisted in the state folder, and never below the
 * clock in ms, so even a lost state file cannot replay an old number.
 *
 * @example
 * const hb = startHeartbeats({ dir, agentId, signingKey, url, intervalMs, core });
 * hb.stop();
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { heartbeatBytes, type Heartbeat } from '../../protocol/owner-api.js';
import { signBytes, type SigningKey } from '../../protocol/keys.js';
import { readResponseBytes } from '../../protocol/bytes.js';
import { HEARTBEAT_SEQ_FILE, writeFileAtomic } from '../config.js';
import { silentLogger, type Logger } from '../log.js';
import type { AgentCore } from './agent.js';
import type { FetchLike } from './hop-post.js';

/** The edge answers a heartbeat with a few fields; more than this is read no further. */
const MAX_ANSWER_BYTES = 64 * 1024;

export interface HeartbeatOptions {
  dir: string;
  agentId: string;
  signingKey: SigningKey;
  url: string;
  intervalMs: number;
  core: Pick<AgentCore, 'sessions' | 'activeJobs'>;
  fetch?: FetchLike;
  clock?: () => number;
  log?: Logger;
}

export interface Heartbeats {
  /** Sends one heartbeat now; resolves with the HTTP status (0 when unreachable). */
  beat(): Promise<number>;
  stop(): void;
}

export async function readSeq(dir: string): Promise<number> {
  try {
    const n = Number((await readFile(join(dir, HEARTBEAT_SEQ_FILE), 'utf8')).trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  } catch {
    return 0;
  }
}

export function startHeartbeats(opts: HeartbeatOptions): Heartbeats {
  const clock = opts.clock ?? Date.now;
  const log = opts.log ?? silentLogger;
  const doFetch = opts.fetch ?? ((u: string, i: RequestInit) => fetch(u, i));
  let last: number | null = null;
  // One heartbeat at a time: the seq file and `last` are read and written by each beat.
  let chain: Promise<unknown> = Promise.resolve();
  let inFlight = 0;
  const beatOnce = async (): Promise<number> => {
    last ??= await readSeq(opts.dir);
    const seq = Math.max(last + 1, clock());
    last = seq;
    await writeFileAtomic(join(opts.dir, HEARTBEAT_SEQ_FILE), String(seq), 0o600);
    const s = opts.core.sessions;
    const unsigned: Omit<Heartbeat, 'signature'> = {
      agent_id: opts.agentId,
      seq,
      sent_at: clock(),
      queue_depth: opts.core.activeJobs,
      load: s.limits.maxSessions ? s.size / s.limits.maxSessions : 0,
      free_kv_bytes: s.freeKvBytes,
      active_sessions: s.size,
    };
    const body: Heartbeat = { ...unsigned, signature: await signBytes(opts.signingKey.privateKey, heartbeatBytes(unsigned)) };
    try {
      const res = await doFetch(opts.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      // Read the (small) answer to its end rather than cancel it: a cancelled body resets the
      // connection under the edge while it may still be writing (workerd logs a broken pipe).
      await readResponseBytes(res, MAX_ANSWER_BYTES).catch(() => null);
      if (!res.ok) log.warn('heartbeat refused', { status: res.status, seq });
      return res.status;
    } catch (err) {
      log.warn('heartbeat failed', { error: err as Error });
      return 0;
    }
  };
  const beat = (): Promise<number> => {
    inFlight++;
    const sent = chain.then(beatOnce).finally(() => inFlight--);
    chain = sent.catch(() => undefined);
    return sent;
  };
  const tick = () => {
    if (inFlight === 0) void beat();
  };
  const timer = setInterval(tick, opts.intervalMs);
  timer.unref();
  tick();
  return { beat, stop: () => clearInterval(timer) };
}
