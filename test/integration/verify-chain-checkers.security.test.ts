/**
 * Checks when nobody else holds a hop's layers at all (docs/trust.md §2, "Covering chains"), end
 * to end: the real edge (workerd), the registry, real `pool-agent serve` processes. Owner A serves
 * a two-hop route [0, 2) -> [2, 4); owners B and C each run agents of [0, 1), [1, 2) and [2, 4)
 * only: no other agent holds [0, 2) or the whole model, so hop 0 can only be re-run by a chain of
 * a [0, 1) and a [1, 2) agent, the first handing its output rows to the second.
 * CHECK_RATE_OVERRIDE=1 checks every job; EXPLORATION_SHARE=0 keeps jobs on the cheapest route.
 *
 * An honest route passes (hop 0 by a chain, hop 1 by a [2, 4) agent). A head that perturbs what it
 * hands on is named by a chain, disputed, upheld by a chain of other agents, slashed and excluded.
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
/** Per owner (B, C): [0, 1), [1, 2), [2, 4). */
let checkers: Record<'b' | 'c', NetworkAgent[]>;
const started = Date.now();

beforeAll(async () => {
  net = await startNetwork({ agents: [], edgeVars: { CHECK_SECRET: toBase64Url(randomBytes(32)), CHECK_RATE_OVERRIDE: '1', EXPLORATION_SHARE: '0' } });
  const owners = { b: await otherOwnerToken(net, 'owner-b'), c: await otherOwnerToken(net, 'owner-c') };
  checkers = { b: [], c: [] };
  for (const [key, price] of [['b', 5], ['c', 6]] as const) {
    for (const layers of [[0, 1], [1, 2], [2, 4]] as const) {
      // Expensive, and of spans no cheap route needs: they check, they do not serve.
      checkers[key].push(await net.addAgent({ name: `${key}-${layers.join('-')}`, region: 'us-east', price, layers: [layers[0], layers[1]], ownerToken: owners[key] }));
    }
  }
  head = await net.addAgent({ name: 'a-head', region: 'eu-west', price: 0.02, layers: [0, 2] });
  tail = await net.addAgent({ name: 'a-tail', region: 'eu-west', price: 0.02, layers: [2, 4] });
  await net.waitForAgents(8);
}, 300_000);

afterAll(async () => {
  await net?.close();
  console.log(`verify-chain-checkers: ${Math.round((Date.now() - started) / 1000)} s`);
});

const all = () => [...checkers.b, ...checkers.c];

/** Waits until the job's check has settled: a final status, or inconclusive. */
const settledCheck = (jobId: string) => checkStatusOrExplain(net, jobId, (s) => FINAL_CHECK.has(s) || s === 'inconclusive', all());

interface SignedVerdictJson {
  checkerId: string;
  verdict: { status: string; reason?: string; hop?: number; agentId?: string; checkedHop?: number; detail: string; evidence: { segment?: { layers: number[]; inputHash?: string; outputHash?: string } } };
}
type Entry = { kind: string; checkerId?: string; checkedHop?: number; passedHops?: number[]; failedHop?: number; verdict?: SignedVerdictJson; via?: { checkerId: string; signed: SignedVerdictJson }[] };

/** The agent of the layers span `layers` among `list`. */
const holderOf = (list: NetworkAgent[], id: string) => list.find((a) => a.id === id);

describe('checks by chains of agents covering a hop', () => {
  it('nobody else holds [0, 2): an honest head passes the check of a [0, 1) -> [1, 2) chain; the tail a [2, 4) agent\'s', async () => {
    const spans = await net.registry.db.select().from(agentSpans);
    expect(spans.filter((s) => s.layerStart === 0 && s.layerEnd === 2).map((s) => s.agentId)).toEqual([head.id]);
    const job = await servedJob(net);
    expect(job.route).toEqual([head.id, tail.id]);
    expect(await settledCheck(job.jobId)).toBe('pass');
    const entries = (await jobRow(net, job.jobId))!.checks as Entry[];
    const hop0 = entries.find((e) => e.kind === 'check' && e.checkedHop === 0)!;
    // The last segment [1, 2) judged the hop on the rows the first segment [0, 1) handed on.
    const first = hop0.via![0]!;
    expect(hop0.via).toHaveLength(1);
    expect(all().find((a) => a.id === first.checkerId)?.name).toMatch(/-0-1$/);
    expect(all().find((a) => a.id === hop0.checkerId)?.name).toMatch(/-1-2$/);
    expect(first.signed.verdict.evidence.segment).toMatchObject({ layers: [0, 1] });
    expect(hop0.verdict!.verdict).toMatchObject({ status: 'pass', checkedHop: 0, evidence: { segment: { layers: [1, 2], inputHash: first.signed.verdict.evidence.segment!.outputHash } } });
    const hop1 = entries.find((e) => e.kind === 'check' && e.checkedHop === 1)!;
    expect(all().find((a) => a.id === hop1.checkerId)?.name).toMatch(/-2-4$/);
    expect(entries.find((e) => e.kind === 'hop_checks')).toMatchObject({ passedHops: [0, 1], uncheckedHops: [] });
    expect(await net.registry.db.select().from(disputes)).toEqual([]);
  }, 120_000);

  it('a head that perturbs what it hands on is named by a chain, upheld by another chain, slashed and excluded', async () => {
    const cheat = await net.addAgent(cheatingAgent({ name: 'a-head-perturb', region: 'eu-west', price: 0.01, layers: [0, 2] }, { kind: 'perturb', scale: 0.03 }));
    await net.waitForAgents(9);
    const job = await until('a job over the cheating head', async () => {
      const j = await servedJob(net);
      if (j.route[0] === cheat.id) return j;
      await settledCheck(j.jobId);
      return null;
    }, { net });
    expect(job.route).toEqual([cheat.id, tail.id]);
    const status = await settledCheck(job.jobId);
    const row = await jobRow(net, job.jobId);
    expect(status, JSON.stringify(row?.checks, null, 1).slice(0, 4000)).toBe('upheld');

    const entries = row!.checks as Entry[];
    const first = entries.find((e) => e.kind === 'check' && e.checkedHop === 0)!;
    expect(first.verdict!.verdict).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 0, agentId: cheat.id, checkedHop: 0 });
    expect(first.via).toHaveLength(1);
    expect(entries.find((e) => e.kind === 'hop_checks')).toMatchObject({ passedHops: [1], failedHop: 0 });

    // The third check: a chain through none of the first chain's agents, its last of another owner.
    const [dispute, ...others] = await net.registry.db.select().from(disputes).where(eq(disputes.jobId, job.jobId));
    expect(others).toEqual([]);
    expect(dispute).toMatchObject({ agentId: cheat.id, status: 'upheld' });
    const [firstId, thirdId] = dispute!.checkerAgentIds;
    expect(firstId).toBe(first.checkerId);
    expect([first.checkerId, first.via![0]!.checkerId]).not.toContain(thirdId);
    const ownerOf = (id: string) => (holderOf(checkers.b, id) ? 'b' : holderOf(checkers.c, id) ? 'c' : '?');
    expect(ownerOf(thirdId!)).not.toBe(ownerOf(firstId!));
    const third = entries.find((e) => e.kind === 'third_check');
    expect(third!.verdict!.verdict).toMatchObject({ status: 'fail', hop: 0, agentId: cheat.id, checkedHop: 0, evidence: { segment: { layers: [1, 2] } } });

    const slashedRow = await agentRow(net, cheat.id);
    expect(slashedRow).toMatchObject({ status: 'slashed', reputation: 0 });
    const slash = (await net.registry.db.select().from(ledgerEntries).where(eq(ledgerEntries.agentId, cheat.id))).find((l) => l.kind === 'slash');
    expect(slash?.jobId).toBe(job.jobId);
    // The honest tail: no dispute, back in service.
    expect((await agentRow(net, tail.id)).status).toBe('active');
    expect(await net.registry.db.select().from(disputes).where(eq(disputes.agentId, tail.id))).toEqual([]);
    for (let i = 0; i < 2; i++) {
      const later = await servedJob(net);
      expect(later.route).toEqual([head.id, tail.id]);
      expect(await settledCheck(later.jobId)).toBe('pass');
    }
  }, 240_000);
});
