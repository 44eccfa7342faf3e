import { describe, expect, it } from 'vitest';
import { DEFAULT_TRUST_POLICY, policyFor } from '../../edge/trust/policy.js';
import { breakEvenRate, checkDraw, checkRate, importCheckSecret, minimumStake, onProbation, routeCheckRate, shouldCheck, type AgentTrust } from '../../edge/trust/sampling.js';

const SECRET = 'edge-check-secret-0123456789abcdef-0123';
const veteran: AgentTrust = { jobsServed: 10_000, checksPassed: 500, reputation: 1, stakeMicroUsd: 100_000_000, probation: false };

describe('shouldCheck', () => {
  it('selects about rate of the jobs, deterministically for one secret', async () => {
    const key = await importCheckSecret(SECRET);
    let hits = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) if (await shouldCheck(`job-${i}`, key, 0.1)) hits++;
    expect(hits / n).toBeGreaterThan(0.09);
    expect(hits / n).toBeLessThan(0.11);
    expect(await checkDraw('job-1', key)).toBe(await checkDraw('job-1', await importCheckSecret(SECRET)));
  });

  it('another secret gives an unrelated selection (agents cannot compute it)', async () => {
    const a = await importCheckSecret(SECRET);
    const b = await importCheckSecret(SECRET + 'x');
    let same = 0;
    for (let i = 0; i < 2_000; i++) if ((await shouldCheck(`job-${i}`, a, 0.5)) === (await shouldCheck(`job-${i}`, b, 0.5))) same++;
    expect(same / 2_000).toBeGreaterThan(0.45);
    expect(same / 2_000).toBeLessThan(0.55);
  });

  it('draws are uniform in [0, 1)', async () => {
    const key = await importCheckSecret(SECRET);
    const buckets = new Array(10).fill(0);
    for (let i = 0; i < 10_000; i++) {
      const d = await checkDraw(`j${i}`, key);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(1);
      buckets[Math.floor(d * 10)]++;
    }
    for (const b of buckets) expect(Math.abs(b - 1000)).toBeLessThan(150);
  });

  it('rate 0, NaN and 1 are exact', async () => {
    const key = await importCheckSecret(SECRET);
    expect(await shouldCheck('j', key, 0)).toBe(false);
    expect(await shouldCheck('j', key, NaN)).toBe(false);
    expect(await shouldCheck('j', key, 1)).toBe(true);
  });

  it('refuses a short secret', async () => {
    await expect(importCheckSecret('short')).rejects.toThrow(RangeError);
  });
});

describe('checkRate', () => {
  it('checks every job of a new agent, an agent on probation, or one under dispute', () => {
    expect(checkRate({ ...veteran, jobsServed: 0, checksPassed: 0, reputation: 0.5 })).toBe(1);
    expect(checkRate({ ...veteran, jobsServed: 100, checksPassed: DEFAULT_TRUST_POLICY.probationChecks - 1 })).toBe(1);
    expect(checkRate({ ...veteran, probation: true })).toBe(1);
    expect(checkRate({ ...veteran, disputeOpen: true })).toBe(1);
    expect(onProbation(veteran)).toBe(false);
  });

  it('decays with reputation from the ceiling to the floor', () => {
    const at = (reputation: number) => checkRate({ ...veteran, reputation });
    expect(at(0.5)).toBeCloseTo(DEFAULT_TRUST_POLICY.ceilingRate, 10);
    expect(at(1)).toBeCloseTo(DEFAULT_TRUST_POLICY.floorRate, 10);
    const rates = [0.5, 0.6, 0.7, 0.8, 0.9, 1].map(at);
    for (let i = 1; i < rates.length; i++) expect(rates[i]!).toBeLessThan(rates[i - 1]!);
    expect(at(NaN)).toBe(at(0));
  });

  it('unstaked agents never go below the unstaked floor', () => {
    expect(checkRate({ ...veteran, stakeMicroUsd: 0 })).toBe(DEFAULT_TRUST_POLICY.unstakedFloorRate);
  });

  it('a job worth more than the stake deters is checked more', () => {
    const small = checkRate(veteran, DEFAULT_TRUST_POLICY, { gainPerJobMicroUsd: 100 });
    const big = checkRate(veteran, DEFAULT_TRUST_POLICY, { gainPerJobMicroUsd: 10_000_000 });
    expect(small).toBe(DEFAULT_TRUST_POLICY.floorRate);
    expect(big).toBeCloseTo(2 * breakEvenRate(veteran.stakeMicroUsd, 10_000_000), 10);
  });

  it('a route takes the rate of its least trusted hop', () => {
    expect(routeCheckRate([veteran, { ...veteran, jobsServed: 1 }])).toBe(1);
    expect(routeCheckRate([veteran, veteran])).toBe(checkRate(veteran));
  });

  it('per-pool overrides are validated', () => {
    expect(checkRate(veteran, policyFor(DEFAULT_TRUST_POLICY, { floorRate: 0.05 }))).toBe(0.05);
    expect(() => policyFor(DEFAULT_TRUST_POLICY, { floorRate: 2 })).toThrow();
    expect(() => policyFor(DEFAULT_TRUST_POLICY, { floorRate: 0.5, ceilingRate: 0.1 })).toThrow();
  });
});

describe('stake arithmetic', () => {
  it('at the break-even rate, cheating has zero expected value; above it, negative', () => {
    const G = 1_000;
    const S = 49_000;
    const p = breakEvenRate(S, G);
    expect(p).toBeCloseTo(0.02, 12);
    expect((1 - p) * G - p * S).toBeCloseTo(0, 6);
    expect((1 - 2 * p) * G - 2 * p * S).toBeLessThan(0);
    expect(minimumStake(p, G)).toBeCloseTo(S, 6);
    expect(minimumStake(0, G)).toBe(Infinity);
  });
});
