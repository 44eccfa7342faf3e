/**
 * Checks with no whole-model agent anywhere (docs/trust.md §2, "Span checkers"), end to end: the
 * real edge (workerd), the registry, and real `pool-agent serve` processes. Owner A serves a
 * two-hop route [0, 2) -> [2, 4); owners B and C each run one agent of [0, 2) only and one of
 * [2, 4) only, the route's would-be checkers. CHECK_RATE_OVERRIDE=1 checks every job;
 * EXPLORATION_SHARE=0 keeps every job on the cheapest route (owner A's).
 *
 * An honest route passes its hop checks (no false positive). A head that perturbs the activations
 * it hands on (test/support/cheating-serve, as in verify-sharded.security.test.ts) is named by the
 * hop check of [0, 2), disputed, upheld by another owner's [0, 2) agent, slashed and never routed
 * to again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { agentSpans, disputes, ledgerEntries } from '../../db/schema/index.js';
import { randomBytes, toBase64Url } from '../../protocol/bytes.js';
import { cheatingAgent } from '../support/cheating-agent.js';
import { agentRow, checkStatusOrExplain, FINAL_CHECK, jobRow, servedJob, until } from '../support/network-jobs.js';
import { otherOwnerToken, startNetwork, type NetworkAgent, type TestNetwork } from '../support/network.js';

let net: TestNetwork;
let head: NetworkAgent;
let tail: NetworkAgent;
/** Owners B and C: one agent of [0, 2) and one of [2, 4) each. */
let b0: NetworkAgent;
let b1: NetworkAgent;
let c0: NetworkAgent;
let c1: NetworkAgent;
const started = Date.now();

beforeAll(async () => {
  net = await startNetwork({ agents: [], edgeVars: { CHECK_SECRET: toBase64Url(randomBytes(32)), CHECK_RATE_OVERRIDE: '1', EXPLORATION_SHARE: '0' } });
  const [ownerB, ownerC] = [await otherOwnerToken(net, 'owner-b'), await otherOwnerToken(net, 'owner-c')];
  // Expensive: they check, they do not serve.
  b0 = await net.addAgent({ name: 'b-head', region: 'us-east', price: 5, layers: [0, 2], ownerToken: ownerB });
  b1 = await net.addAgent({ name: 'b-tail', region: 'us-east', price: 5, layers: [2, 4], ownerToken: ownerB });
  c0 = await net.addAgent({ name: 'c-head', region: 'ap-south', price: 6, layers: [0, 2], ownerToken: ownerC });
  c1 = await net.addAgent({ name: 'c-tail', region: 'ap-south', price: 6, layers: [2, 4], ownerToken: ownerC });
  head = await net.addAgent({ name: 'a-head', region: 'eu-west', price: 0.02, layers: [0, 2] });
  tail = await net.addAgent({ name: 'a-tail', region: 'eu-west', price: 0.02, layers: [2, 4] });
  await net.waitForAgents(6);
}, 300_000);

afterAll(async () => {
  await net?.close();
  console.log(`verify-span-checkers: ${Math.round((Date.now() - started) / 1000)} s`);
});

/** Waits until the job's check has settled: a final status, or inconclusive (no span checker could tell). */
const settledCheck = (jobId: string) => checkStatusOrExplain(net, jobId, (s) => FINAL_CHECK.has(s) || s === 'inconclusive', [b0, b1, c0, c1]);

/** A served job of the suite's one request (the cheapest route: EXPLORATION_SHARE=0). */
const complete = () => servedJob(net);

interface SignedVerdictJson {
  checkerId: string;
  verdict: { status: string; reason?: string; hop?: number; agentId?: string; checkedHop?: number; detail: string };
}
type Entry = { kind: string; checkerId?: string; checkedHop?: number; passedHops?: number[]; uncheckedHops?: number[]; failedHop?: number; verdict?: SignedVerdictJson };

/** The hop checks recorded on the job: hop -> [checker, verdict]. */
function hopChecks(entries: Entry[]): Map<number, { checkerId: string; verdict: SignedVerdictJson['verdict'] }> {
  const out = new Map<number, { checkerId: string; verdict: SignedVerdictJson['verdict'] }>();
  for (const e of entries) if (e.kind === 'check' && e.checkedHop !== undefined) out.set(e.checkedHop, { checkerId: e.checkerId!, verdict: e.verdict!.verdict });
  return out;
}

describe('checks by agents that hold only a span', () => {
  it('no agent holds the whole model: an honest route passes the hop checks of other owners\' span holders', async () => {
    const spans = await net.registry.db.select().from(agentSpans);
    expect(spans).toHaveLength(6);
    expect(spans.filter((s) => s.layerStart === 0 && s.layerEnd === net.numLayers)).toEqual([]);
    const job = await complete();
    expect(job.route).toEqual([head.id, tail.id]);
    expect(await settledCheck(job.jobId)).toBe('pass');
    const entries = (await jobRow(net, job.jobId))!.checks as Entry[];
    const checks = hopChecks(entries);
    expect([b0.id, c0.id]).toContain(checks.get(0)?.checkerId);
    expect([b1.id, c1.id]).toContain(checks.get(1)?.checkerId);
    expect(checks.get(0)?.verdict).toMatchObject({ status: 'pass', checkedHop: 0 });
    expect(checks.get(1)?.verdict).toMatchObject({ status: 'pass', checkedHop: 1 });
    expect(entries.find((e) => e.kind === 'hop_checks')).toMatchObject({ passedHops: [0, 1], uncheckedHops: [] });
    expect(entries.some((e) => e.kind === 'disclosure_withheld' || e.kind === 'no_span_checker')).toBe(false);
    expect(await net.registry.db.select().from(disputes)).toEqual([]);
    for (const hop of [head, tail]) expect((await agentRow(net, hop.id)).checksPassed).toBeGreaterThanOrEqual(1);
  }, 120_000);

  it('a head that perturbs what it hands on is named by the [0, 2) hop check, upheld by another owner\'s [0, 2) agent, slashed and excluded', async () => {
    const cheat = await net.addAgent(cheatingAgent({ name: 'a-head-perturb', region: 'eu-west', price: 0.01, layers: [0, 2] }, { kind: 'perturb', scale: 0.03 }));
    await net.waitForAgents(7);
    const job = await until('a job over the cheating head', async () => {
      const j = await complete();
      if (j.route[0] === cheat.id) return j;
      await settledCheck(j.jobId);
      return null;
    }, { net });
    expect(job.route).toEqual([cheat.id, tail.id]);
    const status = await settledCheck(job.jobId);
    const row = await jobRow(net, job.jobId);
    expect(status, JSON.stringify(row?.checks, null, 1).slice(0, 4000)).toBe('upheld');

    // The first hop check of [0, 2) named the head; the tail's own hop check passed.
    const entries = row!.checks as Entry[];
    const checks = hopChecks(entries);
    const first = checks.get(0)!;
    expect([b0.id, c0.id]).toContain(first.checkerId);
    expect(first.verdict).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 0, agentId: cheat.id, checkedHop: 0 });
    expect(checks.get(1)?.verdict).toMatchObject({ status: 'pass', checkedHop: 1 });
    expect(entries.find((e) => e.kind === 'hop_checks')).toMatchObject({ passedHops: [1], failedHop: 0 });

    // The dispute: its third check was the other owner's [0, 2) agent, scoped to hop 0 too.
    const [dispute, ...others] = await net.registry.db.select().from(disputes).where(eq(disputes.jobId, job.jobId));
    expect(others).toEqual([]);
    expect(dispute).toMatchObject({ agentId: cheat.id, status: 'upheld' });
    const third = first.checkerId === b0.id ? c0.id : b0.id;
    expect(dispute!.checkerAgentIds).toEqual([first.checkerId, third]);
    const thirdEntry = entries.find((e) => e.kind === 'third_check');
    expect(thirdEntry).toMatchObject({ checkerId: third });
    expect(thirdEntry!.verdict!.verdict).toMatchObject({ status: 'fail', hop: 0, agentId: cheat.id, checkedHop: 0 });

    // Slashed, with both span checkers' signed verdicts as evidence.
    const slashedRow = await agentRow(net, cheat.id);
    expect(slashedRow).toMatchObject({ status: 'slashed', reputation: 0 });
    const slash = (await net.registry.db.select().from(ledgerEntries).where(eq(ledgerEntries.agentId, cheat.id))).find((l) => l.kind === 'slash');
    expect(slash?.jobId).toBe(job.jobId);
    expect((slash!.evidence as { verdicts: SignedVerdictJson[] }).verdicts.map((v) => v.checkerId)).toEqual([first.checkerId, third]);

    // The honest tail: no dispute, no slash.
    expect((await agentRow(net, tail.id)).status).toBe('active');
    expect(await net.registry.db.select().from(disputes).where(eq(disputes.agentId, tail.id))).toEqual([]);

    // Never routed to again; the honest route's later jobs pass their hop checks.
    for (let i = 0; i < 2; i++) {
      const later = await complete();
      expect(later.route).not.toContain(cheat.id);
      expect(await settledCheck(later.jobId)).toBe('pass');
    }
  }, 180_000);
});
