/**
 * What an answer says about its route beyond the hops: whether the preferred region
 * (`route.region`) served it (`route.region_met`, `x-layernet-region-met`), and that a stream's
 * headers are provisional (sent before its tokens; the last event is authoritative).
 */
import { describe, expect, it } from 'vitest';
import { createTestEdge, readSse } from './edge-fixtures.js';
import { chatCompletionChunkSchema, chatCompletionSchema } from '../../protocol/api.js';

const chat = (extra: Record<string, unknown> = {}) => ({ model: 'tiny-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, seed: 7, ...extra });

async function finalChunk(res: Response) {
  const { events } = await readSse(res);
  expect(events.at(-1)).toBe('[DONE]');
  return events
    .slice(0, -1)
    .map((e) => chatCompletionChunkSchema.parse(JSON.parse(e)))
    .find((c) => c.choices[0]?.finish_reason)!;
}

describe('route.region_met', () => {
  it('is true, with its header, when the preferred region served the answer', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], region: 'eu-west' }, { layers: [0, 4], region: 'us-east' }] });
    const res = await edge.post('/v1/chat/completions', chat({ route: { region: 'us-east' } }));
    const body = chatCompletionSchema.parse(await res.json());
    expect(body.route.hops.map((h) => h.region)).toEqual(['us-east']);
    expect(body.route.region_met).toBe(true);
    expect(res.headers.get('x-layernet-region-met')).toBe('true');
  });

  it('is false when another region served it (allow_fallbacks, the default)', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], region: 'eu-west' }] });
    const res = await edge.post('/v1/chat/completions', chat({ route: { region: 'us-east' } }));
    expect(res.status).toBe(200);
    const body = chatCompletionSchema.parse(await res.json());
    expect(body.route.hops.map((h) => h.region)).toEqual(['eu-west']);
    expect(body.route.region_met).toBe(false);
    expect(res.headers.get('x-layernet-region-met')).toBe('false');
    // Without fallbacks the region is a filter: nothing there, no answer.
    const strict = await edge.post('/v1/chat/completions', chat({ route: { region: 'us-east', allow_fallbacks: false } }));
    expect(strict.status).toBe(503);
  });

  it('is false when the region failed and another region took over, and the log names the URL that failed', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], region: 'us-east', behaviour: { kind: 'unreachable' } }, { layers: [0, 4], region: 'eu-west' }] });
    const res = await edge.post('/v1/chat/completions', chat({ route: { region: 'us-east' } }));
    const body = chatCompletionSchema.parse(await res.json());
    expect(body.route).toMatchObject({ attempts: 2, region_met: false });
    expect(body.route.hops[0]!.agent_id).toBe(edge.agents[1]!.id);
    const failed = edge.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'route attempt failed')!;
    expect(failed).toMatchObject({ kind: 'unreachable', url: `${edge.agents[0]!.endpoint}/v1/jobs`, agents: [edge.agents[0]!.id] });
    expect(failed.detail).toContain('fetch failed: connection refused');
  });

  it('is absent, with no header, when no region was asked for', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], region: 'eu-west' }] });
    const res = await edge.post('/v1/chat/completions', chat());
    const body = chatCompletionSchema.parse(await res.json());
    expect('region_met' in body.route).toBe(false);
    expect(res.headers.get('x-layernet-region-met')).toBeNull();
  });
});

describe("a stream's headers are provisional", () => {
  it('the attestation header counts the chunks verified when it was sent and says so; the final event has them all', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const res = await edge.post('/v1/chat/completions', chat({ stream: true }));
    const header = res.headers.get('x-layernet-attestation')!;
    expect(header).toMatch(/^verified; chunks=1; chain-head=[0-9a-f]+; url=\/v1\/jobs\/[^;]+; provisional$/);
    const final = await finalChunk(res);
    expect(final.attestation).toMatchObject({ verified: true, chunks: 8 });
    // A collected answer's header is final: no `provisional`.
    const collected = await edge.post('/v1/chat/completions', chat());
    const body = chatCompletionSchema.parse(await collected.json());
    expect(collected.headers.get('x-layernet-attestation')).toBe(`verified; chunks=8; chain-head=${body.attestation.chain_head}; url=${body.attestation.url}`);
  });

  it('a mid-stream failover out of the region: the header said met, the final route says not', async () => {
    const edge = await createTestEdge({
      agents: [
        { layers: [0, 4], region: 'us-east', behaviour: { kind: 'die', afterTokens: 3 } },
        { layers: [0, 4], region: 'eu-west' },
      ],
    });
    const res = await edge.post('/v1/chat/completions', chat({ stream: true, route: { region: 'us-east' } }));
    expect(res.headers.get('x-layernet-region-met')).toBe('true');
    expect(res.headers.get('x-layernet-route')).toBe(edge.agents[0]!.id);
    const final = await finalChunk(res);
    expect(final.route).toMatchObject({ attempts: 2, region_met: false });
    expect(final.route!.hops[0]!.agent_id).toBe(edge.agents[1]!.id);
  });
});
