/**
 * Optimistic re-execution checks end to end, through the real edge (workerd) and real agents:
 * owner A's pool has an honest whole-model agent and a lazy one (an honest agent behind a proxy
 * that replaces every sampled token by a plausible random one and re-signs the chain with the
 * agent's own key, so the edge's inline verification cannot tell); owners B and C each run an
 * honest whole-model agent that can check A's jobs. With CHECK_RATE_OVERRIDE=1 every job is
 * checked: the lazy agent's job fails its check, a dispute opens, the third check upholds it,
 * the agent is slashed in the registry and no later request is routed to it; the honest agent's
 * jobs pass their checks and keep their reputation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { disputes, ledgerEntries } from '../../db/schema/index.js';
import { randomBytes, toBase64Url } from '../../protocol/bytes.js';
import { addProxiedAgent, resigningTamper, type ProxiedAgent } from '../support/evil-proxy.js';
import { agentRow, checkStatus, servedJob, until } from '../support/network-jobs.js';
import { otherOwnerToken, startNetwork, type NetworkAgent, type TestNetwork } from '../support/network.js';

let net: TestNetwork;
let lazy: ProxiedAgent;
let honest: NetworkAgent;
let checkerB: NetworkAgent;
let checkerC: NetworkAgent;

beforeAll(async () => {
  net = await startNetwork({
    agents: [{ name: 'honest-a', region: 'eu-west', price: 0.1 }],
    edgeVars: { CHECK_SECRET: toBase64Url(randomBytes(32)), CHECK_RATE_OVERRIDE: '1' },
  });
  honest = net.agents[0]!;
  checkerB = await net.addAgent({ name: 'checker-b', region: 'us-east', price: 0.5, ownerToken: await otherOwnerToken(net, 'owner-b') });
  checkerC = await net.addAgent({ name: 'checker-c', region: 'ap-south', price: 0.6, ownerToken: await otherOwnerToken(net, 'owner-c') });
  lazy = await addProxiedAgent(net, { name: 'lazy-a', region: 'eu-west', price: 0.05 });
  // Plausible tokens (ordinary vocabulary, never EOS), none computed by the model.
  lazy.proxy.tamper = resigningTamper(lazy.key, { fakeToken: (step) => 300 + ((step * 7919 + 104_729) % 20_000) });
  await net.waitForAgents(4);
}, 300_000);

afterAll(async () => {
  await net?.close();
});

/** A served job of the suite's one request (the cheapest agent, unless it explores). */
const complete = () => servedJob(net);

/** The job's first check status that `wanted` accepts. */
const jobCheck = async (jobId: string, wanted: (s: string) => boolean) => (await checkStatus(net, jobId, wanted)).checkStatus;

describe('re-execution checks', () => {
  it('catches the lazy agent: failed check, dispute upheld by a third checker, slash in the registry', async () => {
    // The cheapest agent serves (a small share of requests explores other routes: try again then).
    let first = await complete();
    for (let i = 0; i < 5 && first.route[0] !== lazy.id; i++) first = await complete();
    // The edge's inline verification let its tokens through.
    expect(first.route).toEqual([lazy.id]);
    expect(lazy.proxy.tampered).toBeGreaterThan(0);

    const status = await jobCheck(first.jobId, (s) => s === 'upheld' || s === 'dismissed' || s === 'voided');
    expect(status).toBe('upheld');
    const slashed = await agentRow(net, lazy.id);
    expect(slashed.status).toBe('slashed');
    expect(slashed.reputation).toBe(0);

    const ledger = await net.registry.db.select().from(ledgerEntries).where(eq(ledgerEntries.agentId, lazy.id));
    const slash = ledger.find((l) => l.kind === 'slash');
    expect(slash?.jobId).toBe(first.jobId);
    // The evidence carries both checkers' signed verdicts, each blaming the lazy agent.
    const verdicts = (slash!.evidence as { verdicts: { checkerId: string; verdict: { status: string; agentId: string } }[] }).verdicts;
    expect(verdicts.map((v) => v.checkerId).sort()).toEqual([checkerB.id, checkerC.id].sort());
    expect(verdicts.every((v) => v.verdict.status === 'fail' && v.verdict.agentId === lazy.id)).toBe(true);
    expect(verdicts.every((v) => ['hidden_mismatch', 'sampling_mismatch'].includes((v.verdict as { reason?: string }).reason ?? ''))).toBe(true);

    const [dispute] = await net.registry.db.select().from(disputes).where(eq(disputes.agentId, lazy.id));
    expect(dispute).toMatchObject({ jobId: first.jobId, status: 'upheld' });
    expect([...dispute!.checkerAgentIds].sort()).toEqual([checkerB.id, checkerC.id].sort());
  }, 120_000);

  it('never routes to the slashed agent again; the honest agent\'s jobs pass their checks and keep its reputation', async () => {
    const before = await agentRow(net, honest.id);
    const served: { jobId: string; route: string[] }[] = [];
    for (let i = 0; i < 4; i++) {
      const job = await complete();
      expect(job.route).not.toContain(lazy.id);
      served.push(job);
    }
    // Whoever served them (the honest agent, or another on an exploring request), every check passes.
    for (const { jobId } of served) expect(await jobCheck(jobId, (s) => s !== 'fail')).toBe('pass');
    const byHonest = served.filter((j) => j.route[0] === honest.id).length;
    expect(byHonest).toBeGreaterThan(0);
    const after = await until('reputation updates', async () => {
      const row = await agentRow(net, honest.id);
      return row.checksPassed >= before.checksPassed + byHonest && row.reputation > before.reputation ? row : null;
    }, { net });
    expect(after.status).toBe('active');
    expect(after.checksPassed).toBe(before.checksPassed + byHonest);
    // No dispute and no slash against anyone but the lazy agent.
    const all = await net.registry.db.select().from(disputes);
    expect(all.every((d) => d.agentId === lazy.id)).toBe(true);
    for (const a of [honest, checkerB, checkerC]) expect((await agentRow(net, a.id)).status).toBe('active');
  }, 120_000);
});
