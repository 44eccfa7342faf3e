/**
 * One agent span cut over several local devices (pool-agent/runtime/local-pipeline.ts): same
 * numbers as one span, the agent serves it as one span end to end, a step that fails part-way
 * poisons the session instead of leaving its parts at different positions, and bad device lists
 * are clear errors. CPU "devices" stand in for GPUs here: the cut and the pipeline are the same.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forwardChain, generate } from '../../pool-agent/runtime/pipeline.js';
import { loadAgentSpan, loadDeviceSpan, parseDevices, pipelineSpan, splitLayers } from '../../pool-agent/runtime/local-pipeline.js';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import { SpanClosedError } from '../../pool-agent/runtime/errors.js';
import type { LoadedSpan, SpanSession } from '../../pool-agent/runtime/types.js';
import { main } from '../../pool-agent/main.js';
import { encode } from '../../protocol/tokenizer.js';
import { createTestEdge, GREEDY, runJob, startChain, tokensOf } from '../support/agents.js';
import { maxAbsDiff, tempModels, type TempModels } from './runtime-fixture.js';

const PROMPT = encode('Several devices, one span', { bos: true });
const CPU2 = parseDevices('cpu,cpu');

let models: TempModels;
let dir: string;
let modelId: string;
const opened: LoadedSpan[] = [];
const keep = <T extends LoadedSpan>(s: T): T => (opened.push(s), s);

beforeAll(async () => {
  models = await tempModels();
  const built = await models.build('tiny', { preset: 'tiny', seed: 5 });
  dir = built.dir;
  modelId = built.modelId;
});
afterAll(async () => {
  for (const s of opened) await s.close();
  await models.cleanup();
});

describe('device lists and layer cuts', () => {
  it('parses cpu, cuda and cuda:N and refuses anything else', () => {
    expect(parseDevices('cuda:0, cuda:1')).toEqual([
      { provider: 'cuda', deviceId: 0 },
      { provider: 'cuda', deviceId: 1 },
    ]);
    expect(parseDevices('cpu')).toEqual([{ provider: 'cpu', deviceId: 0 }]);
    expect(parseDevices('cuda')).toEqual([{ provider: 'cuda', deviceId: 0 }]);
    for (const bad of ['', 'gpu', 'cuda:', 'cuda:x', 'cpu,,cpu', 'cuda:1234']) expect(() => parseDevices(bad)).toThrow(RangeError);
  });

  it('cuts layers evenly, at least one per device', () => {
    expect(splitLayers([0, 8], 3)).toEqual([[0, 3], [3, 5], [5, 8]]);
    expect(splitLayers([2, 4], 2)).toEqual([[2, 3], [3, 4]]);
    expect(splitLayers([0, 4], 1)).toEqual([[0, 4]]);
    expect(() => splitLayers([0, 2], 3)).toThrow(/cannot cut 2 layers/);
  });
});

describe('a span over two devices', () => {
  it('gives the logits and greedy tokens of one span, and reports itself as one span', async () => {
    const one = keep(await loadSpan(dir, [0, 4], { provider: 'cpu', intraOpThreads: 1 }));
    const two = keep(await loadDeviceSpan(dir, [0, 4], CPU2, { intraOpThreads: 1 }));
    expect(two).toMatchObject({ modelId: one.modelId, layers: [0, 4], first: true, last: true, provider: 'cpu', kvBytesPerToken: one.kvBytesPerToken });

    const a = one.openSession();
    const b = two.openSession();
    const ra = await forwardChain([a], Int32Array.from(PROMPT), { logitsToKeep: PROMPT.length });
    const rb = await forwardChain([b], Int32Array.from(PROMPT), { logitsToKeep: PROMPT.length });
    expect(maxAbsDiff(rb.logits, ra.logits)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(rb.finalHidden, ra.finalHidden)).toBeLessThanOrEqual(1e-5);
    expect(b.length).toBe(PROMPT.length);
    expect(b.kvBytes).toBe(a.kvBytes);
    a.dispose();
    b.dispose();

    const ga = await generate({ stages: [one.openSession()], promptIds: PROMPT, sampling: GREEDY, maxTokens: 24 });
    const gb = await generate({ stages: [two.openSession()], promptIds: PROMPT, sampling: GREEDY, maxTokens: 24 });
    expect(gb.tokens).toHaveLength(24);
    expect(gb.tokens).toEqual(ga.tokens);
  });

  it('serves a middle span (hidden states in and out) like one span', async () => {
    const one = keep(await loadSpan(dir, [1, 3], { provider: 'cpu', intraOpThreads: 1 }));
    const two = keep(await loadDeviceSpan(dir, [1, 3], CPU2, { intraOpThreads: 1 }));
    expect(two).toMatchObject({ first: false, last: false, layers: [1, 3] });
    const data = Float32Array.from({ length: 5 * 64 }, (_, i) => Math.sin(i * 0.3));
    const oa = await one.openSession().forward({ kind: 'hidden', data, seqLen: 5 });
    const ob = await two.openSession().forward({ kind: 'hidden', data, seqLen: 5 });
    expect(oa.kind === 'hidden' && ob.kind === 'hidden').toBe(true);
    if (oa.kind === 'hidden' && ob.kind === 'hidden') expect(maxAbsDiff(ob.data as Float32Array, oa.data as Float32Array)).toBeLessThanOrEqual(1e-5);
  });

  it('an agent serves it end to end: same tokens and one attestation per chunk as one span', async () => {
    const edge = await createTestEdge();
    const one = keep(await loadSpan(dir, [0, 4], { provider: 'cpu', intraOpThreads: 1 }));
    const two = keep(await loadAgentSpan(dir, [0, 4], { provider: 'cpu', devices: ['cpu', 'cpu'], threads: 1 }));
    const tokens: number[][] = [];
    for (const span of [one, two]) {
      const chain = await startChain({ edge, spans: [span] });
      try {
        const { signed } = await edge.ticket({ route: chain.route, modelId, promptIds: PROMPT, maxTokens: 12, patch: { chunking: { maxSteps: 4, maxDelayMs: 60_000 } } });
        const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
        expect(res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
        const chunks = res.events.filter((e) => e.type === 'chunk');
        expect(chunks.every((c) => c.type === 'chunk' && c.attestations.length === 1 && c.attestations[0]!.att.layers.join() === '0,4')).toBe(true);
        tokens.push(tokensOf(res.events));
      } finally {
        await chain.close();
      }
    }
    expect(tokens[1]).toHaveLength(12);
    expect(tokens[1]).toEqual(tokens[0]);
  });

  it('a step that fails in a later part poisons the session; the first part alone failing does not', async () => {
    const head = keep(await loadSpan(dir, [0, 2], { provider: 'cpu', intraOpThreads: 1 }));
    const tail = keep(await loadSpan(dir, [2, 4], { provider: 'cpu', intraOpThreads: 1 }));
    let failNext = false;
    const flaky: LoadedSpan = {
      ...tail,
      openSession(options) {
        const s = tail.openSession(options);
        const wrapped: SpanSession = {
          get length() {
            return s.length;
          },
          get kvBytes() {
            return s.kvBytes;
          },
          forward: (input, opts) => (failNext ? Promise.reject(new Error('device lost')) : s.forward(input, opts)),
          dispose: () => s.dispose(),
        };
        return wrapped;
      },
    };
    const span = pipelineSpan([head, flaky]);
    const session = span.openSession();
    // An input the first part refuses: nothing was cached anywhere, the session goes on.
    await expect(session.forward({ kind: 'tokens', ids: Int32Array.of(99_999) })).rejects.toThrow(/outside the vocabulary/);
    await session.forward({ kind: 'tokens', ids: Int32Array.from(PROMPT) });
    failNext = true;
    await expect(session.forward({ kind: 'tokens', ids: Int32Array.of(PROMPT[1]!) })).rejects.toThrow(/device lost/);
    failNext = false;
    await expect(session.forward({ kind: 'tokens', ids: Int32Array.of(PROMPT[1]!) })).rejects.toBeInstanceOf(SpanClosedError);
    session.dispose();
    expect(() => pipelineSpan([tail, head])).toThrow(/consecutive/);
  });

  it('pool-agent bench refuses more devices than layers with a clear error, and measures a two-device span', async () => {
    const state = join(models.root, 'agent-state');
    const io = () => {
      const out: string[] = [];
      const err: string[] = [];
      return { out, err, io: { out: (l: string) => void out.push(l), err: (l: string) => void err.push(l), env: {} } };
    };
    const bad = io();
    expect(await main(['bench', '--dir', state, '--model', dir, '--devices', 'cpu,cpu,cpu,cpu,cpu'], bad.io)).toBe(2);
    expect(bad.err.join('\n')).toMatch(/cannot cut 4 layers \[0, 4\) over 5 devices/);
    const outside = io();
    expect(await main(['bench', '--dir', state, '--model', dir, '--layers', '2:9'], outside.io)).toBe(2);
    expect(outside.err.join('\n')).toMatch(/layers 2:9: span \[2, 9\) is not inside \[0, 4\)/);
    const good = io();
    expect(await main(['bench', '--dir', state, '--model', dir, '--devices', 'cpu,cpu', '--tokens', '4', '--threads', '1'], good.io)).toBe(0);
    expect(JSON.parse(good.out.at(-1)!)).toMatchObject({ modelId, layers: [0, 4], provider: 'cpu' });
  });
});
