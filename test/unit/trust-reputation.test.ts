import { describe, expect, it } from 'vitest';
import { DEFAULT_TRUST_POLICY as P } from '../../edge/trust/policy.js';
import { exclusion, nextReputation, reputationDelta, routeIsStaked, slashAmount, unstakedRouteAllowed } from '../../edge/trust/reputation.js';

describe('reputation', () => {
  it('rises towards 1 with successes and checks, stays in [0, 1]', () => {
    let r = P.initialReputation;
    for (let i = 0; i < 1_000; i++) r = nextReputation(r, { kind: 'job_ok' });
    expect(r).toBeGreaterThan(0.99);
    expect(r).toBeLessThanOrEqual(1);
    expect(nextReputation(0.5, { kind: 'check_passed' })).toBeGreaterThan(nextReputation(0.5, { kind: 'job_ok' }));
  });

  it('falls with failures faster than it rises, and a verified fraud zeroes it', () => {
    expect(0.5 - nextReputation(0.5, { kind: 'job_failed' })).toBeGreaterThan(nextReputation(0.5, { kind: 'job_ok' }) - 0.5);
    expect(nextReputation(0.99, { kind: 'fraud_upheld' })).toBe(0);
    expect(nextReputation(0.8, { kind: 'false_accusation' })).toBeCloseTo(0.8 * (1 - P.weightFalseAccusation), 12);
  });

  it('deltas apply with adjustReputation and clamp garbage', () => {
    expect(0.7 + reputationDelta(0.7, { kind: 'fraud_upheld' })).toBe(0);
    expect(reputationDelta(NaN, { kind: 'job_ok' })).toBeCloseTo(P.weightJobOk, 12);
    expect(nextReputation(7, { kind: 'job_ok' })).toBe(1);
  });

  it('an agent failing most jobs drops below the exclusion floor', () => {
    let r = P.initialReputation;
    for (let i = 0; i < 30; i++) r = nextReputation(r, { kind: 'job_failed' });
    expect(exclusion({ status: 'active', reputation: r })).toEqual({ excluded: true, reason: 'low_reputation' });
  });
});

describe('slashing and exclusion', () => {
  it('slashes integer micro-USD, never more than the stake', () => {
    expect(slashAmount(1_000_001, 'fraud')).toBe(1_000_001);
    expect(slashAmount(1_000_001, 'disclosure_refused')).toBe(500_000);
    expect(slashAmount(1_000, 'false_accusation', { ...P, slashFalseAccusation: 0.1 })).toBe(100);
    expect(slashAmount(0, 'fraud')).toBe(0);
    expect(slashAmount(-5, 'fraud')).toBe(0);
    expect(slashAmount(NaN, 'fraud')).toBe(0);
    expect(slashAmount(Infinity, 'fraud')).toBe(0);
  });

  it('excludes slashed agents and low reputation at once', () => {
    expect(exclusion({ status: 'slashed', reputation: 1 })).toEqual({ excluded: true, reason: 'slashed' });
    expect(exclusion({ status: 'active', reputation: NaN }).excluded).toBe(true);
    expect(exclusion({ status: 'active', reputation: P.exclusionReputation })).toEqual({ excluded: false });
  });

  it('caps unstaked traffic to the operator share', () => {
    expect(unstakedRouteAllowed({ unstakedJobs: 0, totalJobs: 0 })).toBe(false);
    expect(unstakedRouteAllowed({ unstakedJobs: 0, totalJobs: 9 })).toBe(true);
    expect(unstakedRouteAllowed({ unstakedJobs: 10, totalJobs: 100 })).toBe(false);
    expect(unstakedRouteAllowed({ unstakedJobs: 10, totalJobs: 100 }, { ...P, unstakedTrafficShare: 0 })).toBe(false);
    expect(unstakedRouteAllowed({ unstakedJobs: 100, totalJobs: 100 }, { ...P, unstakedTrafficShare: 1 })).toBe(true);
    // over many jobs the share converges to the cap
    let unstaked = 0;
    for (let total = 0; total < 1_000; total++) if (unstakedRouteAllowed({ unstakedJobs: unstaked, totalJobs: total })) unstaked++;
    expect(unstaked).toBe(100);
    expect(routeIsStaked([{ stakeMicroUsd: 1 }, { stakeMicroUsd: 0 }])).toBe(false);
    expect(routeIsStaked([{ stakeMicroUsd: 1 }])).toBe(true);
  });
});
