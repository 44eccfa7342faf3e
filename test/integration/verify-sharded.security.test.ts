/**
 * Per-hop blame on sharded routes, end to end: the real edge (workerd), the registry, and real
 * `pool-agent serve` processes. A cheating hop is a `pool-agent serve` process whose span loader
 * is swapped for a cheating one (test/support/cheating-serve: a module hook, no hook in the agent
 * itself): it claims the registered model and layers, computes something else and signs its own
 * wrong output. Owners B and C each run an honest whole-model agent that can check owner A's
 * routes; CHECK_RATE_OVERRIDE=1 checks every job.
 *
 * For each cheat, on the cheapest route (so routing prefers it): the whole-model check fails
 * the route, the edge gathers the hops' disclosures and asks again, the verdict names the
 * guilty hop (index and agent id), a dispute opens against it, the third check upholds it, the
 * agent is slashed (status, reputation 0, ledger entry) and never routed to again; the honest
 * hops of its route are not blamed.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { disputes, ledgerEntries } from '../../db/schema/index.js';
import { randomBytes, toBase64Url } from '../../protocol/bytes.js';
import { buildModel } from '../../pool-agent/model/build.js';
import { cheatingAgent } from '../support/cheating-agent.js';
import { agentRow, checkStatusOrExplain, FINAL_CHECK, jobRow, servedJob } from '../support/network-jobs.js';
import { otherOwnerToken, startNetwork, type NetworkAgent, type TestNetwork } from '../support/network.js';

const SEED7_DIR = resolve(import.meta.dirname, '../../.models/tiny-seed7');
let net: TestNetwork;
let checkerB: NetworkAgent;
let checkerC: NetworkAgent;
const started = Date.now();

beforeAll(async () => {
  await mkdir(SEED7_DIR, { recursive: true });
  await buildModel({ preset: 'tiny', seed: 7, outDir: SEED7_DIR });
  net = await startNetwork({ agents: [], edgeVars: { CHECK_SECRET: toBase64Url(randomBytes(32)), CHECK_RATE_OVERRIDE: '1' } });
  // Expensive: they check, they do not serve (unless a request explores).
  checkerB = await net.addAgent({ name: 'checker-b', region: 'us-east', price: 5, ownerToken: await otherOwnerToken(net, 'owner-b') });
  checkerC = await net.addAgent({ name: 'checker-c', region: 'ap-south', price: 6, ownerToken: await otherOwnerToken(net, 'owner-c') });
}, 300_000);

afterAll(async () => {
  await net?.close();
  // How long the suite took, for the record (the agents' start included).
  console.log(`verify-sharded: ${Math.round((Date.now() - started) / 1000)} s`);
});

/** Waits until the job's check has settled (a pass or a settled dispute): checks run after the response. */
const settledCheck = (jobId: string) => checkStatusOrExplain(net, jobId, (s) => FINAL_CHECK.has(s), [checkerB, checkerC], 8);

/** A served job of the suite's one request (the cheapest route, unless it explores). */
const complete = () => servedJob(net);

/** A job served by `route` (the cheapest; a request that explores another is let settle, then retried). */
async function completeOn(route: string[]): Promise<string> {
  for (let i = 0; i < 8; i++) {
    const job = await complete();
    if (job.route.join() === route.join()) return job.jobId;
    await settledCheck(job.jobId);
  }
  throw new Error(`no job went over ${route.join(' -> ')}`);
}

interface SignedVerdictJson {
  checkerId: string;
  verdict: { status: string; reason?: string; hop?: number; agentId?: string; detail: string };
}

/**
 * Runs a job over `route` (hop `guilty` cheats) and shows the whole path: the check names the
 * hop, the dispute is upheld by the third check, the slash, the exclusion, honest hops untouched.
 */
async function catchCheater(route: NetworkAgent[], guilty: number, reasons: string[], opts: { afterJob?: () => void; silent?: number[] } = {}): Promise<void> {
  const ids = route.map((a) => a.id);
  const cheat = route[guilty]!;
  const jobId = await completeOn(ids);
  opts.afterJob?.();
  const status = await settledCheck(jobId);
  const job = await jobRow(net, jobId);
  expect(status, JSON.stringify(job?.checks, null, 1).slice(0, 4000)).toBe('upheld');

  // The first check failed the route; asked again with the hops' disclosures, it named the hop.
  const entries = job!.checks as { kind: string; disclosedHops?: number[]; hops?: number[]; reasons?: string[]; verdict?: SignedVerdictJson }[];
  const silent = opts.silent ?? [];
  const withheld = entries.find((e) => e.kind === 'disclosure_withheld');
  if (silent.length) expect(withheld).toMatchObject({ hops: silent, reasons: silent.map(() => 'no_answer') });
  else expect(withheld).toBeUndefined();
  const named = entries.find((e) => e.kind === 'check' && e.disclosedHops);
  expect(named?.disclosedHops).toEqual(ids.map((_, i) => i).filter((h) => !silent.includes(h)));
  expect(named?.verdict?.verdict).toMatchObject({ status: 'fail', hop: guilty, agentId: cheat.id });
  expect(reasons).toContain(named?.verdict?.verdict.reason);

  // The dispute against it, upheld by the other owner's checker.
  const [dispute, ...others] = await net.registry.db.select().from(disputes).where(eq(disputes.jobId, jobId));
  expect(others).toEqual([]);
  expect(dispute).toMatchObject({ agentId: cheat.id, status: 'upheld' });
  expect([...dispute!.checkerAgentIds].sort()).toEqual([checkerB.id, checkerC.id].sort());

  // Slashed: status, reputation, a ledger entry whose evidence is both checkers' verdicts naming the hop.
  const row = await agentRow(net, cheat.id);
  expect(row.status).toBe('slashed');
  expect(row.reputation).toBe(0);
  const slash = (await net.registry.db.select().from(ledgerEntries).where(eq(ledgerEntries.agentId, cheat.id))).find((l) => l.kind === 'slash');
  expect(slash?.jobId).toBe(jobId);
  const verdicts = (slash!.evidence as { verdicts: SignedVerdictJson[] }).verdicts;
  expect(verdicts.map((v) => v.checkerId).sort()).toEqual([checkerB.id, checkerC.id].sort());
  for (const v of verdicts) expect(v.verdict).toMatchObject({ status: 'fail', hop: guilty, agentId: cheat.id });

  // The honest hops of the route: no dispute, no slash, still active.
  for (const honest of route.filter((_, i) => i !== guilty)) {
    expect((await agentRow(net, honest.id)).status).toBe('active');
    expect(await net.registry.db.select().from(disputes).where(eq(disputes.agentId, honest.id))).toEqual([]);
    const ledger = await net.registry.db.select().from(ledgerEntries).where(eq(ledgerEntries.agentId, honest.id));
    expect(ledger.filter((l) => l.kind === 'slash')).toEqual([]);
  }

  // Never routed to again.
  for (let i = 0; i < 2; i++) {
    const later = await complete();
    expect(later.route).not.toContain(cheat.id);
    await settledCheck(later.jobId);
  }
}

describe('per-hop blame on a two-hop route', () => {
  it('a head that perturbs the activations it hands on by 3% is named, disputed, slashed and excluded', async () => {
    const head = await net.addAgent(cheatingAgent({ name: 'head-perturb', region: 'eu-west', price: 0.01, layers: [0, 2] }, { kind: 'perturb', scale: 0.03 }));
    const tail = await net.addAgent({ name: 'tail-a', region: 'eu-west', price: 0.02, layers: [2, 4] });
    await net.waitForAgents(4);
    await catchCheater([head, tail], 0, ['hop_output_mismatch']);
  }, 180_000);

  it('a tail that samples other tokens than the model (honest commitments) is named, disputed, slashed and excluded', async () => {
    // This route's hops talk over POST /v1/spans/forward (the others over links): both record what they disclose.
    const head = await net.addAgent({ name: 'head-b', region: 'eu-west', price: 0.02, layers: [0, 2], serveArgs: ['--hop-transport', 'post'] });
    const tail = await net.addAgent(cheatingAgent({ name: 'tail-sampling', region: 'eu-west', price: 0.005, layers: [2, 4] }, { kind: 'sampling' }));
    await net.waitForAgents(6);
    await catchCheater([head, tail], 1, ['sampling_mismatch']);
  }, 180_000);
});

describe('per-hop blame on a three-hop route', () => {
  it('a middle hop that skips one of its layers is named, disputed, slashed and excluded', async () => {
    const head = await net.addAgent({ name: 'head-c', region: 'eu-west', price: 0.001, layers: [0, 1] });
    const middle = await net.addAgent(cheatingAgent({ name: 'middle-skip', region: 'eu-west', price: 0.001, layers: [1, 3] }, { kind: 'skip_layer' }));
    const tail = await net.addAgent({ name: 'tail-c', region: 'eu-west', price: 0.001, layers: [3, 4] });
    await net.waitForAgents(9);
    await catchCheater([head, middle, tail], 1, ['hop_output_mismatch']);
  }, 180_000);

  it('a head that runs other weights under the registered model id is named, disputed, slashed and excluded', async () => {
    const head = await net.addAgent(cheatingAgent({ name: 'head-weights', region: 'eu-west', price: 0.0005, layers: [0, 1] }, { kind: 'weights', weightsDir: SEED7_DIR }));
    const middle = await net.addAgent({ name: 'middle-d', region: 'eu-west', price: 0.001, layers: [1, 3] });
    const tail = net.agents.find((a) => a.name === 'tail-c')!;
    await net.waitForAgents(11);
    await catchCheater([head, middle, tail], 0, ['hop_output_mismatch']);
  }, 180_000);

  it('a head that perturbs and then goes silent (no disclosure in time) is still named, from its successor\'s disclosure', async () => {
    const head = await net.addAgent(cheatingAgent({ name: 'head-silent', region: 'eu-west', price: 0.00001, layers: [0, 1] }, { kind: 'perturb', scale: 0.03 }));
    const middle = net.agents.find((a) => a.name === 'middle-d')!;
    const tail = net.agents.find((a) => a.name === 'tail-c')!;
    await net.waitForAgents(12);
    // Stopped as soon as its job is answered: the edge's disclosure request gets no answer in time.
    let stopped = false;
    try {
      await catchCheater([head, middle, tail], 0, ['hop_output_mismatch'], { afterJob: () => void (stopped = process.kill(head.pid, 'SIGSTOP')), silent: [0] });
    } finally {
      if (stopped) process.kill(head.pid, 'SIGCONT');
    }
  }, 180_000);

  it('a tail that perturbs the final hidden states it commits to is named, disputed, slashed and excluded', async () => {
    const tail = await net.addAgent(cheatingAgent({ name: 'tail-perturb', region: 'eu-west', price: 0.0001, layers: [3, 4] }, { kind: 'perturb', scale: 0.03 }));
    const head = net.agents.find((a) => a.name === 'head-c')!;
    const middle = net.agents.find((a) => a.name === 'middle-d')!;
    await net.waitForAgents(13);
    await catchCheater([head, middle, tail], 2, ['hidden_mismatch']);
  }, 180_000);
});
