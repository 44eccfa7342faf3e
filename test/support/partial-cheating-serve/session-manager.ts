/**
 * Stands in for pool-agent/server/session-manager.ts inside a `pool-agent serve` process started
 * with `partial-cheating-serve/preload.mjs` (see hooks.mjs): the same module, except that each
 * job's session is created inside `openingJob`, so the span knows which job it serves.
 */
import { SessionManager as AgentSessionManager, type OpenSession, type SessionEntry } from '../../../pool-agent/server/session-manager.js';
import { openingJob } from '../partial-cheat.js';

export * from '../../../pool-agent/server/session-manager.js';

export class SessionManager extends AgentSessionManager {
  override open(req: OpenSession): SessionEntry {
    return super.open({ ...req, create: () => openingJob(req.jobId, req.create) });
  }
}
