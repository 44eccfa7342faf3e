/**
 * protocol/hop-blame.ts: which boundaries a set of disclosures covers, which hops can be re-run
 * (on what, against what), whether a mismatch convicts the re-run hop, and which withholder the
 * blame goes to when nobody is proven wrong.
 */
import { describe, expect, it } from 'vitest';
import { blameWithholder, boundarySources, hopRerun, judgeableHops, mismatchConvicts, reconstructs } from '../../protocol/hop-blame.js';

describe('boundary sources', () => {
  it('takes the sender\'s side first, the receiver\'s otherwise', () => {
    expect(boundarySources(3, [{ hop: 0, outputs: true }, { hop: 1, inputs: true, outputs: true }, { hop: 2, inputs: true }])).toEqual([null, 0, 1]);
    expect(boundarySources(3, [{ hop: 1, inputs: true }, { hop: 2, inputs: true }])).toEqual([null, 1, 2]);
    expect(boundarySources(2, [])).toEqual([null, null]);
    expect(boundarySources(1, [{ hop: 0 }])).toEqual([null]);
  });

  it('a disclosure without the side a boundary needs does not cover it', () => {
    // Hop 1 disclosed only what it sent: boundary 1 is known to nobody.
    expect(boundarySources(3, [{ hop: 1, outputs: true }])).toEqual([null, null, 1]);
  });
});

describe('judgeable hops', () => {
  it('a hop is judged when its input and what it is judged against are known', () => {
    expect(judgeableHops(3, [null, 0, 2])).toEqual([0, 1, 2]);
    // Boundary 2 missing: the middle hop has no output to compare, the tail no input.
    expect(judgeableHops(3, [null, 0, null])).toEqual([0]);
    // Boundary 1 missing: the head has no output, the middle no input.
    expect(judgeableHops(3, [null, null, 2])).toEqual([2]);
    expect(judgeableHops(2, [null, null])).toEqual([]);
    expect(judgeableHops(1, [null])).toEqual([0]);
  });
});

describe('blame for withholding', () => {
  it('goes to a withholder beside a missing boundary, the sender first', () => {
    expect(blameWithholder(2, [null, null], [0, 1])).toEqual({ hop: 0, boundary: 1 });
    expect(blameWithholder(2, [null, null], [1])).toEqual({ hop: 1, boundary: 1 });
    // Boundary 1 came from hop 0; boundary 2 is missing: its receiver withheld it.
    expect(blameWithholder(3, [null, 0, null], [2])).toEqual({ hop: 2, boundary: 2 });
  });

  it('goes to the first withholder when every boundary was covered by the others', () => {
    expect(blameWithholder(3, [null, 0, 2], [1])).toEqual({ hop: 1, boundary: null });
    expect(blameWithholder(3, [null, 0, 2], [2, 1])).toEqual({ hop: 1, boundary: null });
  });

  it('a missing boundary nobody withheld (left out for size) blames no one', () => {
    expect(blameWithholder(2, [null, null], [])).toBeNull();
    // Hop 0 withheld, but boundary 2 (missing for size) is not beside it: it is still the one to blame.
    expect(blameWithholder(3, [null, 1, null], [0])).toEqual({ hop: 0, boundary: null });
  });

  it('ignores hop indexes outside the route', () => {
    expect(blameWithholder(2, [null, 0], [5, -1, 1.5])).toBeNull();
  });
});

describe('hop re-runs with output commitments (outputTopLoc)', () => {
  const all = [true, true, false];
  const none = [false, false, false];

  it('the head runs on the tokens and is judged by its own commitment when nothing is disclosed', () => {
    expect(hopRerun(0, 3, [null, null, null], all, false)).toEqual({ hop: 0, input: 'tokens', sentDisclosed: false, ownCommitment: true, last: false });
    // Without a commitment (an older agent) and without the bytes it sent: not judgeable, as before.
    expect(hopRerun(0, 3, [null, null, null], none, false)).toBeNull();
  });

  it('a middle hop whose output nobody disclosed is judged by its commitment on its disclosed input', () => {
    // 3 hops, hop 1 cheats and withholds, hop 2 lost its disclosure: boundary 1 from hop 0 only.
    expect(hopRerun(1, 3, [null, 0, null], all, false)).toEqual({ hop: 1, input: 'disclosed', sentDisclosed: false, ownCommitment: true, last: false });
    expect(hopRerun(1, 3, [null, 0, null], none, false)).toBeNull();
  });

  it('both the disclosed bytes and the commitment when both are there', () => {
    expect(hopRerun(1, 3, [null, 0, 1], all, false)).toMatchObject({ input: 'disclosed', sentDisclosed: true, ownCommitment: true });
  });

  it('a missing input boundary is replaced by the checker reconstruction only when the hop before stands for it', () => {
    expect(hopRerun(1, 3, [null, null, null], all, true)).toMatchObject({ hop: 1, input: 'recomputed' });
    expect(hopRerun(1, 3, [null, null, null], all, false)).toBeNull();
    expect(hopRerun(2, 3, [null, null, null], all, true)).toEqual({ hop: 2, input: 'recomputed', sentDisclosed: false, ownCommitment: false, last: true });
    // A disclosed boundary always wins over the reconstruction.
    expect(hopRerun(2, 3, [null, null, 1], all, true)).toMatchObject({ input: 'disclosed' });
  });

  it('the last hop is judged by its hidden commitments and tokens, never by an outputTopLoc', () => {
    expect(hopRerun(1, 2, [null, 0], [true, true], false)).toEqual({ hop: 1, input: 'disclosed', sentDisclosed: false, ownCommitment: false, last: true });
    expect(hopRerun(0, 1, [null], [true], false)).toEqual({ hop: 0, input: 'tokens', sentDisclosed: false, ownCommitment: false, last: true });
  });

  it('a mismatch on the exact input convicts; on a reconstruction only a hop that withheld its own disclosure', () => {
    const exact = hopRerun(1, 3, [null, 0, null], all, false)!;
    const rebuilt = hopRerun(1, 3, [null, null, null], all, true)!;
    expect(mismatchConvicts(exact, [])).toBe(true);
    expect(mismatchConvicts(hopRerun(0, 3, [null, null, null], all, false)!, [])).toBe(true);
    expect(mismatchConvicts(rebuilt, [1])).toBe(true);
    // Hop 0 may have sent other bytes than its commitment describes; hop 1 could show what it got.
    expect(mismatchConvicts(rebuilt, [])).toBe(false);
    expect(mismatchConvicts(rebuilt, [0, 2])).toBe(false);
  });

  it('a re-run stands for what the hop sent only when it agreed with commitments covering every chunk and nothing else gives the boundary', () => {
    const run = hopRerun(0, 3, [null, null, null], all, false)!;
    expect(reconstructs(run, true, true)).toBe(true);
    expect(reconstructs(run, false, true)).toBe(false);
    expect(reconstructs(run, true, false)).toBe(false);
    expect(reconstructs(hopRerun(0, 3, [null, 0, null], all, false)!, true, true)).toBe(false);
    expect(reconstructs(hopRerun(2, 3, [null, null, null], all, true)!, true, true)).toBe(false);
  });
});
