/** Bounded reads of another host's HTTP body (protocol/bytes.ts readResponseBytes). */
import { describe, expect, it } from 'vitest';
import { readResponseBytes } from '../../protocol/bytes.js';

/** A body streamed in `chunks` pieces of `size` bytes; records whether the reader cancelled it. */
function streamed(chunks: number, size: number): { res: Response; state: { cancelled: boolean; pulled: number } } {
  const state = { cancelled: false, pulled: 0 };
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (state.pulled === chunks) return controller.close();
      controller.enqueue(new Uint8Array(size).fill(state.pulled++ & 0xff));
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { res: new Response(body), state };
}

describe('readResponseBytes', () => {
  it('returns the whole body up to the bound, in order', async () => {
    const { res } = streamed(4, 100);
    const bytes = await readResponseBytes(res, 400);
    expect(bytes?.byteLength).toBe(400);
    expect([bytes![0], bytes![100], bytes![399]]).toEqual([0, 1, 3]);
    expect(await readResponseBytes(new Response(null), 10)).toEqual(new Uint8Array(0));
  });

  it('stops at the first byte over the bound and cancels the rest', async () => {
    const { res, state } = streamed(1000, 100);
    expect(await readResponseBytes(res, 399)).toBeNull();
    expect(state.cancelled).toBe(true);
    expect(state.pulled).toBeLessThan(10);
  });
});
