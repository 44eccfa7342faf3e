/**
 * The edge's scheduled trust tick through the real Worker in workerd: wrangler's `/__scheduled`
 * runs the Worker's `scheduled` handler (the Cron Trigger's path) against the real registry. A
 * dispute nobody settled within the policy's 24 hours is voided (its accused leaves probation),
 * a route block whose time is over ends (its hops leave probation) with no request served, and
 * an open dispute due for a retry that no agent may check is noted so and stays open.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { agents, disputes, routeBlocks } from '../../db/schema/index.js';
import { upsertModel } from '../../db/seed.js';
import { seedAgents } from '../../db/seed-agents.js';
import type { CheckRequest } from '../../protocol/check.js';
import { startNetwork, type TestNetwork } from '../support/network.js';
import { testModel } from '../support/model.js';

let net: TestNetwork;

beforeAll(async () => {
  net = await startNetwork({ agents: [] });
});
afterAll(async () => {
  await net?.close();
});

describe('scheduled trust tick (workerd)', () => {
  it('voids a dispute past its timeout, ends an expired route block, notes a retry with no eligible checker', async () => {
    const model = await testModel();
    await upsertModel(net.registry.db, model.manifest);
    const { agentIds } = await seedAgents(net.registry.db, { modelIds: [model.modelId], numLayers: model.numLayers, count: 3 });
    const [accused, hop, fresh] = agentIds as [string, string, string];
    const day = 24 * 60 * 60 * 1000;
    const [stale] = await net.registry.db
      .insert(disputes)
      .values({ jobId: 'job-stale', agentId: accused, reason: 'hidden_mismatch', evidence: { verdicts: [] }, createdAt: new Date(Date.now() - day - 60_000) })
      .returning({ id: disputes.id });
    // Due for a retry; every other agent is of the accused's owner (seeded pools): nobody may check it.
    const request = { signedTicket: { ticket: { jobId: 'job-fresh', route: [{ agentId: fresh }] }, signature: 'x' }, promptIds: [1], prefixIds: [], attestations: [] } as unknown as CheckRequest;
    const [open] = await net.registry.db
      .insert(disputes)
      .values({
        jobId: 'job-fresh', agentId: fresh, reason: 'hidden_mismatch', evidence: { verdicts: [] }, checkerAgentIds: ['first-checker'],
        checkRequest: { modelId: model.modelId, numLayers: model.numLayers, request }, retryAfter: new Date(Date.now() - 1), createdAt: new Date(),
      })
      .returning({ id: disputes.id });
    await net.registry.db.insert(routeBlocks).values({ modelId: model.modelId, route: [hop], headAgentId: hop, jobId: 'job-block', reason: 'hidden_mismatch', until: new Date(Date.now() - 1) });
    for (const id of agentIds) await net.registry.db.update(agents).set({ probation: true }).where(eq(agents.id, id));

    await net.tick();

    const status = async (id: string) => (await net.registry.db.select().from(disputes).where(eq(disputes.id, id)))[0]!;
    expect(await status(stale!.id)).toMatchObject({ status: 'rejected', evidence: { settled: { state: 'voided', reason: 'timeout' } } });
    const retried = await status(open!.id);
    expect(retried).toMatchObject({ status: 'open', retryNote: { outcome: 'no_eligible_checker', asked: 0 } });
    expect(retried.retryAfter!.getTime()).toBeGreaterThan(Date.now());
    expect(await net.registry.db.select().from(routeBlocks)).toEqual([]);
    const probation = async (id: string) => (await net.registry.db.select({ probation: agents.probation }).from(agents).where(eq(agents.id, id)))[0]!.probation;
    expect([await probation(accused), await probation(hop), await probation(fresh)]).toEqual([false, false, true]);
    expect(net.edgeLogs.filter((l) => /could not|tick failed|retry failed/.test(l))).toEqual([]);
    expect(net.edgeLogs.some((l) => l.includes('dispute left open: no eligible third checker'))).toBe(true);
  });
});
