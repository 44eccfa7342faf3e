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
import { agents, disputes, jobs, ledgerEntries } from '../../db/schema/index.js';
import { createAccount, createApiKey } from '../../db/seed.js';
import { randomBytes, toBase64Url } from '../../protocol/bytes.js';
import { addProxiedAgent, resigningTamper, type ProxiedAgent } from '../support/evil-proxy.js';
import { startNetwork, type NetworkAgent, type TestNetwork } from '../support/network.js';

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
  const ownerKey = async (name: string) => {
    const account = await createAccount(net.registry.db, { name, kind: 'user' });
    return (await createApiKey(net.registry.db, { accountId: account.id, scopes: ['pool-owner'], name: `${name} owner` })).key;
  };
  checkerB = await net.addAgent({ name: 'checker-b', region: 'us-east', price: 0.5, ownerToken: await ownerKey('owner-b') });
  checkerC = await net.addAgent({ name: 'checker-c', region: 'ap-south', price: 0.6, ownerToken: await ownerKey('owner-c') });
  lazy = await addProxiedAgent(net, { name: 'lazy-a', region: 'eu-west', price: 0.05 });
  // Plausible tokens (ordinary vocabulary, never EOS), none computed by the model.
  lazy.proxy.tamper = resigningTamper(lazy.key, { fakeToken: (step) => 300 + ((step * 7919 + 104_729) % 20_000) });
  await net.waitForAgents(4);
}, 300_000);

afterAll(async () => {
  await net?.close();
});

const params = {
  messages: [{ role: 'user', content: 'Say something about layered networks' }],
  max_tokens: 12,
  seed: 7,
  temperature: 0.8,
  route: { sort: 'price' },
};

async function complete(): Promise<{ jobId: string; route: string[] }> {
  const res = await fetch(`${net.edgeUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: net.modelName, ...params }),
  });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  const body = JSON.parse(text) as { route: { hops: { agent_id: string }[] }; attestation: { job_id: string } };
  return { jobId: body.attestation.job_id, route: body.route.hops.map((h) => h.agent_id) };
}

async function until<T>(what: string, read: () => Promise<T | null | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\nedge: ${net.edgeLogs.slice(-30).join('\n')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const agentRow = async (id: string) => (await net.registry.db.select().from(agents).where(eq(agents.id, id)))[0]!;
const jobCheck = async (jobId: string, wanted: (s: string | null) => boolean) =>
  until(`job ${jobId} check status`, async () => {
    const [row] = await net.registry.db.select({ status: jobs.checkStatus }).from(jobs).where(eq(jobs.id, jobId));
    return row && wanted(row.status) ? row.status : null;
  });

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
    const slashed = await agentRow(lazy.id);
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
    const before = await agentRow(honest.id);
    const served: { jobId: string; route: string[] }[] = [];
    for (let i = 0; i < 4; i++) {
      const job = await complete();
      expect(job.route).not.toContain(lazy.id);
      served.push(job);
    }
    // Whoever served them (the honest agent, or another on an exploring request), every check passes.
    for (const { jobId } of served) expect(await jobCheck(jobId, (s) => s !== null && s !== 'fail')).toBe('pass');
    const byHonest = served.filter((j) => j.route[0] === honest.id).length;
    expect(byHonest).toBeGreaterThan(0);
    const after = await until('reputation updates', async () => {
      const row = await agentRow(honest.id);
      return row.checksPassed >= before.checksPassed + byHonest && row.reputation > before.reputation ? row : null;
    });
    expect(after.status).toBe('active');
    expect(after.checksPassed).toBe(before.checksPassed + byHonest);
    // No dispute and no slash against anyone but the lazy agent.
    const all = await net.registry.db.select().from(disputes);
    expect(all.every((d) => d.agentId === lazy.id)).toBe(true);
    for (const a of [honest, checkerB, checkerC]) expect((await agentRow(a.id)).status).toBe('active');
  }, 120_000);
});
