import { describe, expect, it } from 'vitest';
import type { CheckVerdict } from '../../protocol/check.js';
import { ineligibleThirdCheckers, openDispute, transition, type Dispute } from '../../edge/trust/dispute.js';
import { DEFAULT_TRUST_POLICY as P } from '../../edge/trust/policy.js';

const failVerdict: CheckVerdict = { jobId: 'job-1', status: 'fail', reason: 'sampling_mismatch', hop: 0, agentId: 'agent-a', detail: 'step 3', evidence: { step: 3 } };
const passVerdict: CheckVerdict = { jobId: 'job-1', status: 'pass', detail: 'ok', evidence: {} };
const inconclusive: CheckVerdict = { jobId: 'job-1', status: 'inconclusive', reason: 'checker_error', detail: 'no model', evidence: {} };
const stakes = { stakeOf: (id: string) => (id === 'agent-a' ? 5_000_000 : 2_000_000) };

function open(): Dispute {
  const r = openDispute({ id: 'd1', jobId: 'job-1', firstCheckerId: 'checker-1', verdict: failVerdict, at: 1_000 });
  if (!r.ok) throw new Error(r.reason);
  expect(r.effects).toEqual([{ kind: 'probation', agentId: 'agent-a', on: true }]);
  return r.dispute;
}

describe('dispute state machine', () => {
  it('only a failed verdict naming an agent opens a dispute, and not against the checker itself', () => {
    expect(openDispute({ id: 'd', jobId: 'j', firstCheckerId: 'c', verdict: passVerdict, at: 1 }).ok).toBe(false);
    expect(openDispute({ id: 'd', jobId: 'j', firstCheckerId: 'c', verdict: inconclusive, at: 1 }).ok).toBe(false);
    expect(openDispute({ id: 'd', jobId: 'j', firstCheckerId: 'agent-a', verdict: failVerdict, at: 1 }).ok).toBe(false);
    const routeWide = { ...failVerdict, agentId: undefined, hop: undefined };
    expect(openDispute({ id: 'd', jobId: 'j', firstCheckerId: 'c', verdict: routeWide, at: 1 }).ok).toBe(false);
    expect(openDispute({ id: 'd', jobId: 'j', firstCheckerId: 'c', verdict: routeWide, accusedAgentId: 'agent-b', at: 1 })).toMatchObject({ ok: true, dispute: { accusedAgentId: 'agent-b' } });
  });

  it('upheld: the third check blames the accused -> full slash, reputation 0, exclusion, evidence kept', () => {
    const { dispute, effects } = transition(open(), { kind: 'third_check', checkerId: 'checker-2', verdict: failVerdict, at: 2_000 }, stakes);
    expect(dispute.state).toBe('upheld');
    expect(dispute.settledAt).toBe(2_000);
    expect(dispute.evidence).toHaveLength(2);
    expect(effects).toContainEqual(expect.objectContaining({ kind: 'slash', agentId: 'agent-a', amountMicroUsd: 5_000_000, severity: 'fraud' }));
    expect(effects).toContainEqual({ kind: 'reputation', agentId: 'agent-a', event: { kind: 'fraud_upheld' } });
    expect(effects).toContainEqual({ kind: 'exclude', agentId: 'agent-a' });
  });

  it('dismissed: the third check passes -> the first checker loses reputation, the accused leaves probation', () => {
    const { dispute, effects } = transition(open(), { kind: 'third_check', checkerId: 'checker-2', verdict: passVerdict, at: 2_000 }, stakes);
    expect(dispute.state).toBe('dismissed');
    expect(effects).toContainEqual({ kind: 'reputation', agentId: 'checker-1', event: { kind: 'false_accusation' } });
    expect(effects).toContainEqual({ kind: 'probation', agentId: 'agent-a', on: false });
    expect(effects.some((e) => e.kind === 'slash')).toBe(false);
    const harsh = transition(open(), { kind: 'third_check', checkerId: 'checker-2', verdict: passVerdict, at: 2_000 }, stakes, { ...P, slashFalseAccusation: 0.1 });
    expect(harsh.effects).toContainEqual(expect.objectContaining({ kind: 'slash', agentId: 'checker-1', amountMicroUsd: 200_000 }));
  });

  it('inconclusive third checks retry with other checkers, then void', () => {
    let d = open();
    for (let i = 0; i < P.disputeMaxAttempts - 1; i++) {
      const r = transition(d, { kind: 'third_check', checkerId: `c${i}`, verdict: inconclusive, at: 2_000 + i }, stakes);
      expect(r.dispute.state).toBe('open');
      expect(r.effects).toEqual([]);
      d = r.dispute;
    }
    const last = transition(d, { kind: 'third_check', checkerId: 'c-last', verdict: inconclusive, at: 3_000 }, stakes);
    expect(last.dispute.state).toBe('voided');
    expect(last.effects).toEqual([{ kind: 'probation', agentId: 'agent-a', on: false }]);
  });

  it('an upheld disclosure refusal slashes at the disclosure rate', () => {
    const refused = { ...failVerdict, reason: 'disclosure_mismatch' as const };
    const r = openDispute({ id: 'd2', jobId: 'job-1', firstCheckerId: 'checker-1', verdict: refused, at: 1 });
    if (!r.ok) throw new Error(r.reason);
    const { effects } = transition(r.dispute, { kind: 'third_check', checkerId: 'c2', verdict: refused, at: 2 }, stakes);
    expect(effects).toContainEqual(expect.objectContaining({ kind: 'slash', agentId: 'agent-a', amountMicroUsd: 2_500_000, severity: 'disclosure_refused' }));
  });

  it('a route-wide third check (no hop named) convicts no one', () => {
    const routeWide = { ...failVerdict, agentId: undefined, hop: undefined };
    expect(transition(open(), { kind: 'third_check', checkerId: 'c2', verdict: routeWide, at: 2 }, stakes).dispute.state).toBe('open');
  });

  it('a third check that blames another agent does not uphold against the accused', () => {
    const other = { ...failVerdict, agentId: 'agent-b', hop: 1 };
    expect(transition(open(), { kind: 'third_check', checkerId: 'c2', verdict: other, at: 2 }, stakes).dispute.state).toBe('open');
  });

  it('the accused, the first checker and repeat checkers cannot settle it', () => {
    const d = open();
    for (const checkerId of ['agent-a', 'checker-1']) {
      expect(transition(d, { kind: 'third_check', checkerId, verdict: passVerdict, at: 2 }, stakes).dispute).toBe(d);
    }
    const once = transition(d, { kind: 'third_check', checkerId: 'c2', verdict: inconclusive, at: 2 }, stakes).dispute;
    expect(transition(once, { kind: 'third_check', checkerId: 'c2', verdict: passVerdict, at: 3 }, stakes).dispute).toBe(once);
    expect(ineligibleThirdCheckers(once, ['agent-a', 'agent-z'])).toEqual(new Set(['agent-a', 'agent-z', 'checker-1', 'c2']));
  });

  it('times out into voided; settled disputes ignore further events', () => {
    const d = open();
    expect(transition(d, { kind: 'tick', at: 1_000 + P.disputeTimeoutMs - 1 }, stakes).dispute.state).toBe('open');
    const v = transition(d, { kind: 'tick', at: 1_000 + P.disputeTimeoutMs }, stakes).dispute;
    expect(v.state).toBe('voided');
    expect(transition(v, { kind: 'third_check', checkerId: 'c9', verdict: failVerdict, at: 5 }, stakes)).toEqual({ dispute: v, effects: [] });
  });
});
