import { describe, expect, it } from 'vitest';
import { createTestEdge, signedHeartbeat, testManifest } from './edge-fixtures.js';
import { generateSigningKey, signBytes } from '../../protocol/keys.js';
import { registrationProofBytes, agentRegistrationSchema, type RegisterAgent } from '../../protocol/owner-api.js';
import { manifestHash } from '../../protocol/manifest.js';

const chat = { model: 'tiny-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, seed: 1 };

async function registration(key: Awaited<ReturnType<typeof generateSigningKey>>, poolId: string, modelId: string, endpoint = 'http://new-agent.test:9000'): Promise<RegisterAgent> {
  const body: Omit<RegisterAgent, 'proof'> = {
    pool_id: poolId,
    endpoint,
    public_key: key.publicKey,
    hardware: { devices: [{ kind: 'cpu', name: 'cpu', memoryBytes: 1 }], memoryBytes: 1, platform: 'test' },
    price: 0.5,
    spans: [{ model_id: modelId, layers: [0, 4] }],
    throughput_tokens_per_s: 10,
    issued_at: Date.now(),
  };
  return { ...body, proof: await signBytes(key.privateKey, registrationProofBytes(body)) };
}

describe('edge security', () => {
  it('a revoked key stops working within the key cache TTL', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }], config: { keyCacheTtlMs: 100 } });
    expect((await edge.post('/v1/chat/completions', chat)).status).toBe(200);
    await edge.store.revokeApiKey(edge.client.record.id, Date.now());
    await new Promise((r) => setTimeout(r, 150));
    const res = await edge.post('/v1/chat/completions', chat);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain('revoked');
  });

  it('the key cache TTL is capped at 5 s whatever the config says', async () => {
    const { resolveConfig } = await import('../../edge/config.js');
    expect(resolveConfig({ keyCacheTtlMs: 60_000 }).keyCacheTtlMs).toBe(5_000);
  });

  it('never logs the presented key', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], behaviour: { kind: 'http-error' } }] });
    await edge.post('/v1/chat/completions', chat);
    await edge.post('/v1/chat/completions', chat, edge.client.key.slice(0, -1) + 'x');
    await edge.settle();
    // The secret is base64url and may itself hold '_': everything after `ln_<prefix>_`.
    const secret = edge.client.key.slice('ln_'.length + 12 + 1);
    expect(secret).toHaveLength(43);
    expect(edge.logs.length).toBeGreaterThan(0);
    for (const line of edge.logs) expect(line).not.toContain(secret);
  });

  it('heartbeats: signed, strictly increasing seq, replays refused', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const agent = edge.agents[0]!;
    const base = { agent_id: agent.id, seq: 5, sent_at: Date.now(), queue_depth: 3, load: 0.5, free_kv_bytes: 100, active_sessions: 1 };
    const hb = await signedHeartbeat(agent.key, base);
    const ok = await edge.app.request(`/v1/agents/${agent.id}/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(hb) });
    expect(ok.status).toBe(200);
    expect((await edge.store.getAgent(agent.id))!.queueDepth).toBe(3);
    const replay = await edge.app.request(`/v1/agents/${agent.id}/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(hb) });
    expect(replay.status).toBe(409);
    const older = await signedHeartbeat(agent.key, { ...base, seq: 4 });
    expect((await edge.app.request(`/v1/agents/${agent.id}/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(older) })).status).toBe(409);
    const other = await generateSigningKey();
    const forged = await signedHeartbeat(other, { ...base, seq: 9 });
    expect((await edge.app.request(`/v1/agents/${agent.id}/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(forged) })).status).toBe(401);
    const tampered = { ...(await signedHeartbeat(agent.key, { ...base, seq: 10 })), queue_depth: 0 };
    expect((await edge.app.request(`/v1/agents/${agent.id}/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(tampered) })).status).toBe(401);
  });

  it('owner flow: pool, model, agent with proof of key, heartbeat, then routed traffic', async () => {
    const edge = await createTestEdge({ agents: [] });
    const auth = { authorization: `Bearer ${edge.ownerKey.key}`, 'content-type': 'application/json' };
    const poolRes = await edge.app.request('/v1/owner/pools', { method: 'POST', headers: auth, body: JSON.stringify({ name: 'mine', region: 'eu-west' }) });
    expect(poolRes.status).toBe(201);
    const pool = (await poolRes.json()) as { id: string };
    const list = (await (await edge.app.request('/v1/owner/pools', { headers: auth })).json()) as { data: Array<{ id: string }> };
    expect(list.data.map((p) => p.id)).toEqual([pool.id]);

    const manifest = testManifest(4, 'second-model');
    const pub = await edge.app.request('/v1/owner/models', { method: 'POST', headers: auth, body: JSON.stringify({ manifest }) });
    expect(pub.status).toBe(201);
    expect(((await pub.json()) as { id: string }).id).toBe(await manifestHash(manifest));
    expect((await edge.app.request('/v1/owner/models', { method: 'POST', headers: auth, body: JSON.stringify({ manifest }) })).status).toBe(200);

    const key = await generateSigningKey();
    const reg = await registration(key, pool.id, edge.modelId);
    // A proof signed by another key is refused.
    const wrong = { ...reg, proof: await signBytes((await generateSigningKey()).privateKey, registrationProofBytes((({ proof: _p, ...r }) => r)(reg))) };
    expect((await edge.app.request('/v1/owner/agents', { method: 'POST', headers: auth, body: JSON.stringify(wrong) })).status).toBe(401);
    // Tampering with the body after signing breaks the proof.
    expect((await edge.app.request('/v1/owner/agents', { method: 'POST', headers: auth, body: JSON.stringify({ ...reg, price: 0 }) })).status).toBe(401);
    const created = await edge.app.request('/v1/owner/agents', { method: 'POST', headers: auth, body: JSON.stringify(reg) });
    expect(created.status).toBe(201);
    const answer = agentRegistrationSchema.parse(await created.json());
    expect(answer.edge_public_key).toBe(edge.edgeKey.publicKey);
    expect(new URL(answer.heartbeat_url).pathname).toBe(`/v1/agents/${answer.agent_id}/heartbeat`);

    // Another owner can neither see nor change it.
    const stranger = await edge.newKey(['pool-owner'], 'acct_stranger', {});
    const strangerAuth = { authorization: `Bearer ${stranger.key}`, 'content-type': 'application/json' };
    expect((await edge.app.request(`/v1/owner/agents/${answer.agent_id}`, { method: 'PATCH', headers: strangerAuth, body: JSON.stringify({ price: 0 }) })).status).toBe(404);
    expect((await edge.app.request(`/v1/owner/agents/${answer.agent_id}`, { method: 'DELETE', headers: strangerAuth })).status).toBe(404);
    expect((await edge.app.request('/v1/owner/agents', { method: 'POST', headers: strangerAuth, body: JSON.stringify(await registration(await generateSigningKey(), pool.id, edge.modelId)) })).status).toBe(404);
    // An inference key cannot use owner routes.
    expect((await edge.app.request('/v1/owner/pools', { headers: { authorization: `Bearer ${edge.client.key}` } })).status).toBe(403);

    // A failure's cooldown shows its owner why the agent gets no traffic.
    const cooledUntil = Date.now() + 60_000;
    await edge.store.setCooldown(answer.agent_id, cooledUntil, 'timeout');
    const patched = await edge.app.request(`/v1/owner/agents/${answer.agent_id}`, { method: 'PATCH', headers: auth, body: JSON.stringify({ price: 2, status: 'draining' }) });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ price: 2, cooldown_until: new Date(cooledUntil).toISOString(), cooldown_reason: 'timeout' });
    expect((await edge.store.getAgent(answer.agent_id))!.status).toBe('draining');
    const del = await edge.app.request(`/v1/owner/agents/${answer.agent_id}`, { method: 'DELETE', headers: auth });
    expect(del.status).toBe(200);
    const hb = await signedHeartbeat(key, { agent_id: answer.agent_id, seq: 1, sent_at: Date.now(), queue_depth: 0, load: 0, free_kv_bytes: 0, active_sessions: 0 });
    expect((await edge.app.request(answer.heartbeat_url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(hb) })).status).toBe(404);
  });
});
