/**
 * A downstream hop under bad frames: truncated, oversized, wrong dtype, wrong shape, garbage,
 * unknown session, out-of-order steps. Each gets a clear error frame and HTTP status, and a job
 * running through the same agent at the same time finishes with the right tokens.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { errorFrameMetaSchema, type ForwardMeta } from '../../protocol/agent-api.js';
import { decodeFrame, encodeFrame } from '../../protocol/frame.js';
import { generate } from '../../pool-agent/runtime/pipeline.js';
import { fakeModel, fakeSpan, type FakeModel } from '../support/fake-span.js';
import { createTestEdge, GREEDY, runJob, startChain, tokensOf, type InProcessChain, type TestEdge } from '../support/agents.js';

const PROMPT = [1, 3, 5, 7, 11];
let model: FakeModel;
let edge: TestEdge;
let chain: InProcessChain;

beforeAll(async () => {
  model = await fakeModel();
  edge = await createTestEdge();
  chain = await startChain({
    edge,
    spans: [fakeSpan(model, [0, 2], { delayMs: 5 }), fakeSpan(model, [2, 4])],
    agentOptions: (i) => (i === 1 ? { limits: { maxFramePayloadBytes: 64 * 1024 } } : {}),
  });
});
afterAll(async () => chain.close());

async function post(bytes: Uint8Array): Promise<{ status: number; code: string; message: string }> {
  const res = await fetch(new URL('/v1/spans/forward', chain.route[1]!.endpoint), { method: 'POST', body: bytes as BodyInit });
  const frame = decodeFrame(new Uint8Array(await res.arrayBuffer()), { maxPayloadBytes: 0 });
  expect(frame.kind).toBe('error');
  const meta = errorFrameMetaSchema.parse(frame.meta);
  return { status: res.status, code: meta.code, message: meta.message };
}

async function forwardMeta(open: boolean, steps: [number, number] = [0, 1]): Promise<ForwardMeta> {
  const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 4 });
  return { signedTicket: signed, hop: 1, steps, prevHash: 'a'.repeat(64), open };
}

describe('bad frames at a downstream hop', () => {
  it('answers each with a clear error while another job keeps running', async () => {
    const session = fakeSpan(model, [0, 4]).openSession();
    const expected = (await generate({ stages: [session], promptIds: PROMPT, sampling: GREEDY, maxTokens: 30 })).tokens;
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 30 });
    const running = runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });

    const H = model.manifest.architecture.hiddenSize;
    const good = encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, PROMPT.length, H], meta: await forwardMeta(true), payload: new Float32Array(PROMPT.length * H) });

    const truncated = await post(good.subarray(0, good.byteLength - 7));
    expect(truncated).toMatchObject({ status: 400, code: 'bad_frame' });
    expect(truncated.message).toMatch(/truncated/);

    expect(await post(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]))).toMatchObject({ status: 400, code: 'bad_frame' });
    expect(await post(new Uint8Array(0))).toMatchObject({ status: 400, code: 'bad_frame' });

    const oversized = encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, 4096, H], meta: await forwardMeta(true), payload: new Float32Array(4096 * H) });
    expect(await post(oversized)).toMatchObject({ status: 413, code: 'payload_too_large' });

    const dtype = encodeFrame({ kind: 'forward', dtype: 'float16', dims: [1, PROMPT.length, H], meta: await forwardMeta(true), payload: new Uint16Array(PROMPT.length * H) });
    const wrongDtype = await post(dtype);
    expect(wrongDtype).toMatchObject({ status: 400, code: 'bad_frame' });
    expect(wrongDtype.message).toMatch(/float32/);

    const shape = encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, PROMPT.length, H + 1], meta: await forwardMeta(true), payload: new Float32Array(PROMPT.length * (H + 1)) });
    const wrongShape = await post(shape);
    expect(wrongShape).toMatchObject({ status: 400, code: 'bad_frame' });
    expect(wrongShape.message).toMatch(/\[1, T, 8\]/);

    const prefillLength = encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, 2, H], meta: await forwardMeta(true), payload: new Float32Array(2 * H) });
    expect(await post(prefillLength)).toMatchObject({ status: 400, code: 'bad_frame' });

    const unknown = encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, 1, H], meta: await forwardMeta(false, [5, 6]), payload: new Float32Array(H) });
    const unknownSession = await post(unknown);
    expect(unknownSession).toMatchObject({ status: 404, code: 'unknown_session' });
    expect(unknownSession.message).toMatch(/no open session/);

    // The running job's own session, hit with a decode frame from a forged (other) ticket.
    const hijack = { ...(await forwardMeta(false, [1, 2])), signedTicket: { ...signed, ticket: { ...signed.ticket, nonce: 'x'.repeat(20) } } };
    const hijacked = await post(encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, 1, H], meta: hijack, payload: new Float32Array(H) }));
    expect(['invalid_ticket', 'unknown_session']).toContain(hijacked.code);

    const badMeta = await post(encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, 1, H], meta: { hello: 1 }, payload: new Float32Array(H) }));
    expect(badMeta).toMatchObject({ status: 400, code: 'bad_frame' });
    const wrongKind = await post(encodeFrame({ kind: 'hidden', dtype: 'float32', dims: [1, 1, H], meta: {}, payload: new Float32Array(H) }));
    expect(wrongKind).toMatchObject({ status: 400, code: 'bad_frame' });

    const res = await running;
    expect(res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
    expect(tokensOf(res.events)).toEqual(expected);
    await vi.waitFor(() => expect(chain.agents[1]!.core.sessions.size).toBe(0));
    const health = await fetch(new URL('/healthz', chain.route[1]!.endpoint));
    expect(health.status).toBe(200);
  });
});
