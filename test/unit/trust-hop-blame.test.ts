/**
 * protocol/hop-blame.ts: which boundaries a set of disclosures covers, which hops can be re-run,
 * and which withholder the blame goes to when nobody is proven wrong.
 */
import { describe, expect, it } from 'vitest';
import { blameWithholder, boundarySources, judgeableHops } from '../../protocol/hop-blame.js';

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
