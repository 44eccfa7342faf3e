/**
 * A standing condition is logged once per key and window, not on every request (edge/log.ts),
 * and the app's log goes through that throttle.
 */
import { describe, expect, it } from 'vitest';
import { throttledLog } from '../../edge/log.js';
import { buildDeps } from '../../edge/app.js';
import { createMemoryStore } from '../../edge/store/memory.js';
import { createByteTokenizer } from '../../edge/text/byte-tokenizer.js';
import { generateSigningKey } from '../../protocol/keys.js';

describe('throttledLog', () => {
  it('writes a throttled entry once per key and window, then says how many it held back', () => {
    let now = 0;
    const lines: Record<string, unknown>[] = [];
    const log = throttledLog((e) => lines.push(e), () => now, 60_000);
    for (let i = 0; i < 5; i++) log({ level: 'warn', msg: 'no checker', jobId: `j${i}`, throttle: 'no_checker:m1' });
    log({ level: 'warn', msg: 'no checker', jobId: 'other', throttle: 'no_checker:m2' });
    expect(lines.map((l) => [l.jobId, l.throttle, l.repeats])).toEqual([
      ['j0', undefined, undefined],
      ['other', undefined, undefined],
    ]);
    expect(lines[0]!.throttled).toBe('at most once every 1 min');
    now = 60_000;
    log({ level: 'warn', msg: 'no checker', jobId: 'j5', throttle: 'no_checker:m1' });
    expect(lines.at(-1)).toMatchObject({ jobId: 'j5', repeats: 4 });
  });

  it('passes every other entry through untouched', () => {
    const lines: Record<string, unknown>[] = [];
    const log = throttledLog((e) => lines.push(e), () => 0);
    log({ level: 'warn', msg: 'route attempt failed' });
    log({ level: 'warn', msg: 'route attempt failed' });
    expect(lines).toEqual([{ level: 'warn', msg: 'route attempt failed' }, { level: 'warn', msg: 'route attempt failed' }]);
  });
});

describe("the edge's log", () => {
  it('throttles entries that ask for it', async () => {
    const key = await generateSigningKey();
    const lines: Record<string, unknown>[] = [];
    const deps = buildDeps({
      store: createMemoryStore(),
      signingKey: { id: 'k', publicKey: key.publicKey, privateKey: key.privateKey },
      transport: async () => new Response(null, { status: 500 }),
      tokenizer: createByteTokenizer(),
      clock: { now: () => 1_000 },
      log: (e) => lines.push(e),
    });
    for (let i = 0; i < 3; i++) deps.log({ level: 'warn', msg: 'job sampled for a check, but no independent checker is available', throttle: 'no_checker:m' });
    deps.log({ level: 'info', msg: 'something else' });
    expect(lines.map((l) => l.msg)).toEqual(['job sampled for a check, but no independent checker is available', 'something else']);
  });
});
