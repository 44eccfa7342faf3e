/**
 * Agents of a pool owner. Scope: pool-owner.
 * - POST /v1/owner/agents: register, with proof of possession of the agent's key (the agent
 *   signs the registration body); spans must name published models and fit their layers.
 * - PATCH /v1/owner/agents/:id: price, spans, status, endpoint.
 * - DELETE /v1/owner/agents/:id: deregister.
 * Another owner's agent reads as 404.
 */
import type { Hono } from 'hono';
import type { AppEnv, EdgeDeps } from '../deps.js';
import { ApiError } from '../../protocol/errors.js';
import { verifyBytes } from '../../protocol/keys.js';
import { registerAgentSchema, registrationProofBytes, updateAgentSchema, type AgentRegistration } from '../../protocol/owner-api.js';
import { StoreConflictError, type AgentRecord, type SpanRecord } from '../../db/registry-contract.js';
import { requireScope } from '../auth/middleware.js';
import { parseWith, readJsonBody } from '../http/body.js';

async function checkSpans(deps: EdgeDeps, spans: Array<{ model_id: string; layers: [number, number] }>): Promise<SpanRecord[]> {
  const out: SpanRecord[] = [];
  for (const [i, s] of spans.entries()) {
    const model = await deps.store.getModel(s.model_id);
    if (!model) throw new ApiError('invalid_request', `spans.${i}.model_id: no published model ${s.model_id}`, `spans.${i}.model_id`);
    if (s.layers[1] > model.numLayers) throw new ApiError('invalid_request', `spans.${i}.layers: model has ${model.numLayers} layers`, `spans.${i}.layers`);
    out.push({ modelId: s.model_id, layers: [s.layers[0], s.layers[1]] });
  }
  return out;
}

function agentView(a: AgentRecord) {
  return {
    id: a.id,
    pool_id: a.poolId,
    endpoint: a.endpoint,
    public_key: a.publicKey,
    status: a.status,
    price: a.priceMicroUsdPerMTok / 1e6,
    reputation: a.reputation,
    spans: a.spans.map((s) => ({ model_id: s.modelId, layers: s.layers })),
    last_heartbeat_at: a.lastHeartbeatAt === null ? null : new Date(a.lastHeartbeatAt).toISOString(),
    // Why the agent gets no traffic for a while (the last failure's kind), so its owner can look.
    cooldown_until: a.cooldownUntil === null ? null : new Date(a.cooldownUntil).toISOString(),
    cooldown_reason: a.cooldownReason,
  };
}

async function ownedAgent(deps: EdgeDeps, id: string, accountId: string): Promise<AgentRecord> {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new ApiError('not_found', 'no such agent');
  const agent = await deps.store.getAgent(id);
  if (!agent || agent.ownerAccountId !== accountId || agent.status === 'deregistered') throw new ApiError('not_found', 'no such agent');
  return agent;
}

export function registerOwnerAgents(app: Hono<AppEnv>): void {
  app.post('/v1/owner/agents', requireScope('pool-owner'), async (c) => {
    const deps = c.get('deps');
    const auth = c.get('auth');
    const body = parseWith(registerAgentSchema, await readJsonBody(c.req.raw, deps.config.maxBodyBytes, deps.config.bodyReadTimeoutMs));
    const now = deps.clock.now();
    if (Math.abs(now - body.issued_at) > deps.config.registrationProofMaxAgeMs) {
      throw new ApiError('invalid_signature', 'registration proof is too old (issued_at)', 'issued_at');
    }
    const { proof, ...unsigned } = body;
    if (!(await verifyBytes(body.public_key, proof, registrationProofBytes(unsigned)))) {
      throw new ApiError('invalid_signature', 'proof does not verify with public_key', 'proof');
    }
    const pool = await deps.store.getPool(body.pool_id);
    if (!pool || pool.ownerAccountId !== auth.accountId) throw new ApiError('not_found', 'no such pool', 'pool_id');
    const spans = await checkSpans(deps, body.spans);
    let agent: AgentRecord;
    try {
      agent = await deps.store.registerAgent(
        {
          poolId: pool.id,
          ownerAccountId: auth.accountId,
          endpoint: body.endpoint,
          publicKey: body.public_key,
          hardware: body.hardware,
          priceMicroUsdPerMTok: Math.round(body.price * 1e6),
          throughputTokensPerS: body.throughput_tokens_per_s,
          spans,
        },
        now,
      );
    } catch (err) {
      if (err instanceof StoreConflictError) throw new ApiError('conflict', err.message, 'public_key');
      throw err;
    }
    const answer: AgentRegistration = {
      agent_id: agent.id,
      pool_id: pool.id,
      edge_key_id: deps.signingKey.id,
      edge_public_key: deps.signingKey.publicKey,
      heartbeat_url: new URL(`/v1/agents/${agent.id}/heartbeat`, c.req.url).toString(),
      heartbeat_interval_ms: deps.config.heartbeatIntervalMs,
    };
    return c.json(answer, 201);
  });

  app.patch('/v1/owner/agents/:id', requireScope('pool-owner'), async (c) => {
    const deps = c.get('deps');
    const agent = await ownedAgent(deps, c.req.param('id'), c.get('auth').accountId);
    const patch = parseWith(updateAgentSchema, await readJsonBody(c.req.raw, deps.config.maxBodyBytes, deps.config.bodyReadTimeoutMs));
    const updated = await deps.store.updateAgent(agent.id, {
      ...(patch.price !== undefined ? { priceMicroUsdPerMTok: Math.round(patch.price * 1e6) } : {}),
      ...(patch.spans ? { spans: await checkSpans(deps, patch.spans) } : {}),
      ...(patch.status ? { status: patch.status } : {}),
      ...(patch.endpoint ? { endpoint: patch.endpoint } : {}),
    });
    if (!updated) throw new ApiError('not_found', 'no such agent');
    return c.json(agentView(updated));
  });

  app.delete('/v1/owner/agents/:id', requireScope('pool-owner'), async (c) => {
    const deps = c.get('deps');
    const agent = await ownedAgent(deps, c.req.param('id'), c.get('auth').accountId);
    await deps.store.deregisterAgent(agent.id, deps.clock.now());
    return c.json({ id: agent.id, deleted: true });
  });
}
