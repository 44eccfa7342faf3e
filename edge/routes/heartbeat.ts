/**
 * POST /v1/agents/:id/heartbeat: signed by the agent's registered key; `seq` must be strictly
 * greater than the last accepted one (the store applies it atomically), so a replayed or
 * reordered heartbeat is refused with 409.
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { ApiError } from '../../protocol/errors.js';
import { verifyBytes } from '../../protocol/keys.js';
import { heartbeatBytes, heartbeatSchema } from '../../protocol/owner-api.js';
import { parseWith, readJsonBody } from '../http/body.js';

/** Heartbeats claiming to be sent further than this from the edge's clock are refused, ms. */
const MAX_HEARTBEAT_SKEW_MS = 5 * 60_000;

export function registerHeartbeat(app: Hono<AppEnv>): void {
  app.post('/v1/agents/:id/heartbeat', async (c) => {
    const deps = c.get('deps');
    const body = parseWith(heartbeatSchema, await readJsonBody(c.req.raw, 16 * 1024, deps.config.bodyReadTimeoutMs));
    const id = c.req.param('id');
    if (body.agent_id !== id) throw new ApiError('invalid_request', 'agent_id differs from the URL', 'agent_id');
    const agent = await deps.store.getAgent(id);
    if (!agent || agent.status === 'deregistered') throw new ApiError('not_found', 'no such agent');
    const { signature, ...unsigned } = body;
    if (!(await verifyBytes(agent.publicKey, signature, heartbeatBytes(unsigned)))) {
      throw new ApiError('invalid_signature', 'heartbeat signature does not verify', 'signature');
    }
    const now = deps.clock.now();
    if (Math.abs(now - body.sent_at) > MAX_HEARTBEAT_SKEW_MS) throw new ApiError('invalid_request', 'sent_at is too far from the edge clock', 'sent_at');
    const result = await deps.store.applyHeartbeat({
      agentId: id,
      seq: body.seq,
      sentAt: body.sent_at,
      receivedAt: now,
      queueDepth: body.queue_depth,
      load: body.load,
      freeKvBytes: body.free_kv_bytes,
      activeSessions: body.active_sessions,
    });
    if (result === 'unknown_agent') throw new ApiError('not_found', 'no such agent');
    if (result === 'replay') throw new ApiError('conflict', 'heartbeat seq is not greater than the last accepted one (replay)', 'seq');
    return c.json({ ok: true, status: agent.status, next_heartbeat_ms: deps.config.heartbeatIntervalMs });
  });
}
