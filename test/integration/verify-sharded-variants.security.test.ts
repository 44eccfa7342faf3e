/**
 * Checks on sharded routes under the network's own check policy (no CHECK_RATE_OVERRIDE): the
 * real edge (workerd), the registry, real `pool-agent serve` processes, whole-model checkers of
 * two other owners.
 *
 * - An honest three-hop route whose hops run onnxruntime on 1, 2 and 1 threads (a thread count
 *   may change the order of float sums, so the hops' and the checker's arithmetic may differ)
 *   passes each of 20 checks: its first 20 jobs (new agents are on probation: every job is
 *   checked), then jobs the edge's draw checks at the unstaked floor rate (the test holds
 *   CHECK_SECRET, so it knows which). No dispute, no slash.
 * - A middle hop that cheats on only 10% of its jobs (a 3% perturbation, on jobs picked by a
 *   hash of the job id: test/support/partial-cheat.ts) is caught at the first job it cheats on
 *   while on probation, and disputed, slashed and excluded there. Bound: a new agent is checked
 *   on every job until it has served 20 jobs and passed 10 checks (edge/trust/sampling.ts; the
 *   job being checked is not counted among those served before it, so jobs 1-20 for sure), so a
 *   10% cheater is caught within its first 20 jobs unless it cheats on none of them (0.9^20 = 12.2%).
 *   Such a cheater has been an honest agent so far; afterwards its route is checked at the
 *   unstaked floor, 0.1, i.e. one catch per ~100 of its jobs at this cheating share
 *   (docs/trust.md §4), too long for a test: the test then starts another one (at most 4 in
 *   all; all clean: 0.122^4 = 2e-4).
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { disputes, ledgerEntries } from '../../db/schema/index.js';
import { fromBase64Url, randomBytes, toBase64Url } from '../../protocol/bytes.js';
import { DEFAULT_TRUST_POLICY } from '../../edge/trust/policy.js';
import { checkDraw, importCheckSecret } from '../../edge/trust/sampling.js';
import { CHEAT_ENV } from '../support/cheating-span.js';
import { CHEAT_RATE_ENV, cheatedJob } from '../support/partial-cheat.js';
import { agentRow, chatJob, jobRow, servedJob, settledCheck } from '../support/network-jobs.js';
import { otherOwnerToken, startNetwork, type NetworkAgent, type TestNetwork } from '../support/network.js';

const PRELOAD = pathToFileURL(resolve(import.meta.dirname, '../support/partial-cheating-serve/preload.mjs')).href;

let net: TestNetwork;
let checkerB: NetworkAgent;
let checkerC: NetworkAgent;
const started = Date.now();

const CHECK_SECRET = toBase64Url(randomBytes(32));

beforeAll(async () => {
  net = await startNetwork({ agents: [], edgeVars: { CHECK_SECRET } });
  checkerB = await net.addAgent({ name: 'checker-b', region: 'us-east', price: 5, ownerToken: await otherOwnerToken(net, 'owner-b') });
  checkerC = await net.addAgent({ name: 'checker-c', region: 'ap-south', price: 6, ownerToken: await otherOwnerToken(net, 'owner-c') });
}, 300_000);

afterAll(async () => {
  await net?.close();
  console.log(`verify-sharded-variants: ${Math.round((Date.now() - started) / 1000)} s`);
});

const disputesOf = (id: string) => net.registry.db.select().from(disputes).where(eq(disputes.agentId, id));
const slashesOf = async (id: string) => (await net.registry.db.select().from(ledgerEntries).where(eq(ledgerEntries.agentId, id))).filter((l) => l.kind === 'slash');

interface VerdictEntry {
  kind: string;
  disclosedHops?: number[];
  verdict?: { checkerId: string; verdict: { status: string; reason?: string; hop?: number; agentId?: string; evidence: { hidden?: { mantissaErrMean?: number; indexOverlap?: number } } } };
}

describe('an honest three-hop route on 1, 2 and 1 onnxruntime threads', () => {
  it('passes every check of 20 checked jobs: no dispute, no slash', async () => {
    const region = 'honest-threads';
    const head = await net.addAgent({ name: 'head-t1', region, price: 0.01, layers: [0, 1] });
    const middle = await net.addAgent({ name: 'middle-t2', region, price: 0.01, layers: [1, 3], serveArgs: ['--threads', '2'] });
    const tail = await net.addAgent({ name: 'tail-t1', region, price: 0.01, layers: [3, 4] });
    await net.waitForAgents(5);
    const route = [head.id, middle.id, tail.id];
    const key = await importCheckSecret(fromBase64Url(CHECK_SECRET));
    const jobIds: string[] = [];
    let checked = 0;
    let worstMantissa = 0;
    for (let n = 1; checked < 20 && n <= 200; n++) {
      const job = await servedJob(net, { region, seed: n, prompt: `Tell me about hop ${n}` });
      expect(job.route).toEqual(route);
      jobIds.push(job.jobId);
      // Checked for sure: on probation (fewer than 20 jobs served before it), or drawn under
      // the unstaked floor rate afterwards (the draw is the edge's, from CHECK_SECRET).
      if (n > DEFAULT_TRUST_POLICY.probationJobs && (await checkDraw(job.jobId, key)) >= DEFAULT_TRUST_POLICY.unstakedFloorRate) continue;
      const row = await settledCheck(net, job.jobId).catch(async (err: Error) => {
        const rows = await Promise.all(route.map((id) => agentRow(net, id)));
        throw new Error(`job ${n}: ${err.message}\nhops: ${JSON.stringify(rows.map((r) => ({ observations: r.observations, checksPassed: r.checksPassed, probation: r.probation })))}\n${net.edgeLogs.slice(-30).join('\n')}`);
      });
      expect(row.checkStatus, JSON.stringify(row.checks).slice(0, 3000)).toBe('pass');
      const pass = (row.checks as VerdictEntry[]).find((e) => e.kind === 'check');
      expect(pass?.verdict?.verdict.status).toBe('pass');
      worstMantissa = Math.max(worstMantissa, pass?.verdict?.verdict.evidence.hidden?.mantissaErrMean ?? 0);
      checked++;
    }
    expect(checked).toBe(20);
    // Every check of the route's jobs (those drawn above the floor included) passed; one still
    // running after the last waited-for check (they take well under a second) is let finish.
    await new Promise((r) => setTimeout(r, 3_000));
    const rows = await Promise.all(jobIds.map((id) => jobRow(net, id)));
    const statuses = rows.filter((r) => r?.checkStatus).map((r) => r!.checkStatus);
    expect(new Set(statuses)).toEqual(new Set(['pass']));
    for (const hop of [head, middle, tail]) {
      const row = await agentRow(net, hop.id);
      expect(row.status).toBe('active');
      expect(row.checksPassed).toBe(statuses.length);
      expect(row.jobsChecked).toBe(statuses.length);
      expect(row.reputation).toBeGreaterThan(DEFAULT_TRUST_POLICY.initialReputation);
      expect(await disputesOf(hop.id)).toEqual([]);
      expect(await slashesOf(hop.id)).toEqual([]);
    }
    console.log(`honest 1/2/1 threads: ${jobIds.length} jobs, ${statuses.length} checked, all passed; worst committed-row mantissa error mean ${worstMantissa} (fp32 tolerance 4)`);
  }, 300_000);
});

describe('a middle hop that cheats on 10% of its jobs, under the normal check policy', () => {
  it('is caught at the first job it cheats on while on probation, then disputed, slashed and excluded', async () => {
    const schedule = { rate: 0.1, afterJobs: 0 };
    const outcomes: string[] = [];
    let caught: { attempt: number; job: number } | null = null;
    for (let attempt = 1; attempt <= 4 && !caught; attempt++) {
      const region = `partial-${attempt}`;
      const head = await net.addAgent({ name: `head-p${attempt}`, region, price: 0.01, layers: [0, 1] });
      const cheater = await net.addAgent({
        name: `middle-cheats-10pct-${attempt}`,
        region,
        price: 0.01,
        layers: [1, 3],
        env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${PRELOAD}`.trim(), [CHEAT_ENV]: JSON.stringify({ kind: 'perturb', scale: 0.03 }), [CHEAT_RATE_ENV]: String(schedule.rate) },
      });
      const tail = await net.addAgent({ name: `tail-p${attempt}`, region, price: 0.01, layers: [3, 4] });
      await net.waitForAgents(net.agents.length);
      const route = [head.id, cheater.id, tail.id];
      // Jobs 1..20: on probation for sure (fewer than 20 jobs served before each).
      for (let n = 1; n <= DEFAULT_TRUST_POLICY.probationJobs; n++) {
        const job = await servedJob(net, { region, seed: n, prompt: `Tell me about hop ${n}` });
        expect(job.route).toEqual(route);
        const row = await settledCheck(net, job.jobId);
        const entries = row.checks as VerdictEntry[];
        if (!cheatedJob(schedule, n, job.jobId)) {
          // An honest job of the cheater, on probation: checked, and it passes.
          expect(row.checkStatus, JSON.stringify(entries).slice(0, 3000)).toBe('pass');
          continue;
        }
        // Its first cheated job: the route fails, the disclosures name the middle hop, the third check upholds it.
        expect(row.checkStatus, JSON.stringify(entries, null, 1).slice(0, 4000)).toBe('upheld');
        const named = entries.find((e) => e.kind === 'check' && e.disclosedHops);
        expect(named?.disclosedHops).toEqual([0, 1, 2]);
        expect(named?.verdict?.verdict).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 1, agentId: cheater.id });
        const [dispute, ...others] = await net.registry.db.select().from(disputes).where(eq(disputes.jobId, job.jobId));
        expect(others).toEqual([]);
        expect(dispute).toMatchObject({ agentId: cheater.id, status: 'upheld' });
        expect([...dispute!.checkerAgentIds].sort()).toEqual([checkerB.id, checkerC.id].sort());
        expect(await agentRow(net, cheater.id)).toMatchObject({ status: 'slashed', reputation: 0 });
        expect((await slashesOf(cheater.id)).map((s) => s.jobId)).toEqual([job.jobId]);
        for (const honest of [head, tail]) {
          expect((await agentRow(net, honest.id)).status).toBe('active');
          expect(await disputesOf(honest.id)).toEqual([]);
          expect(await slashesOf(honest.id)).toEqual([]);
        }
        // Excluded: its region has no route left (the cheater was its only middle hop), and anywhere else it is not chosen.
        const after = await chatJob(net, { region, seed: n + 1 });
        expect(after).toMatchObject({ ok: false, status: 503 });
        const elsewhere = await servedJob(net, { seed: n + 2 });
        expect(elsewhere.route).not.toContain(cheater.id);
        caught = { attempt, job: n };
        break;
      }
      outcomes.push(caught ? `attempt ${attempt}: caught at its job ${caught.job}` : `attempt ${attempt}: cheated on none of its first 20 jobs (all checked, all passed)`);
      if (!caught) for (const a of [head, cheater, tail]) await a.kill();
    }
    console.log(`10% cheater: ${outcomes.join('; ')}`);
    expect(caught, outcomes.join('; ')).not.toBeNull();
  }, 480_000);
});
