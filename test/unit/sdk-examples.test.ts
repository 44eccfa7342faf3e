import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { http, HttpResponse } from 'msw';
import { BASE, server, sseBody } from './sdk-msw.js';
import { createTestEdge } from './edge-fixtures.js';
import { LayerNet } from '../../sdk/src/index.js';
import { parseFinal, parseToolCalls, runAgentLoop } from '../../examples/agent-loop.js';
import { showRoute } from '../../examples/show-route.js';

beforeAll(() => server.listen({ onUnhandledRequest: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

describe('agent-loop example', () => {
  it('parses only exact calls to known tools', () => {
    expect(parseToolCalls('CALL add(2, 3)\nCALL nope(1)\n  CALL echo(hi there)  \nxx CALL time()\nCALL time(')).toEqual([
      { name: 'add', args: '2, 3' },
      { name: 'echo', args: 'hi there' },
    ]);
    expect(parseToolCalls('qzjx CALLadd(1,2) ))( \u0000 CALL')).toEqual([]);
    expect(parseToolCalls(`CALL echo(${'x'.repeat(501)})`)).toEqual([]);
    expect(parseToolCalls(Array.from({ length: 10 }, () => 'CALL time()').join('\n'))).toHaveLength(4);
    expect(parseFinal('blah\nFINAL: 5\n')).toBe('5');
    expect(parseFinal('no final here')).toBeNull();
  });

  it('runs tools and stops at FINAL (scripted model)', async () => {
    const turns = ['Let me add.\nCALL add(2, 3)\n', 'FINAL: 5'];
    const seen: unknown[] = [];
    server.use(
      http.post(`${BASE}/v1/chat/completions`, async ({ request }) => {
        const body = (await request.json()) as { messages: unknown[] };
        seen.push(body.messages);
        const text = turns[seen.length - 1] ?? '';
        const chunk = { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: text }, finish_reason: null }] };
        return new HttpResponse(sseBody([chunk]), { headers: { 'content-type': 'text/event-stream' } });
      }),
    );
    const client = new LayerNet({ apiKey: 'k', baseURL: BASE });
    const result = await runAgentLoop({ client, model: 'm', task: '2+3?' });
    expect(result.stoppedBy).toBe('final');
    expect(result.final).toBe('5');
    expect(result.toolCalls).toEqual([{ name: 'add', args: '2, 3' }]);
    expect(result.messages.find((m) => m.role === 'tool')?.content).toBe('5');
    expect(seen).toHaveLength(2);
  });

  it('ends at the step limit on a gibberish model (the real edge with fake agents), verifying each turn', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const client = new LayerNet({ apiKey: edge.client.key, baseURL: 'http://edge.local', fetch: async (url, init) => edge.app.fetch(new Request(url, init)) });
    const events: string[] = [];
    const result = await runAgentLoop({ client, model: 'tiny-test', task: 'hi', maxSteps: 2, maxTokensPerStep: 6, verify: true, onEvent: (e) => events.push(e) });
    expect(result.stoppedBy).toBe('max_steps');
    expect(result.steps).toBe(2);
    expect(events.filter((e) => e.startsWith('verified 6 chunks'))).toHaveLength(2);
  });
});

describe('show-route example', () => {
  it('prints the route and the re-verified chain', async () => {
    const edge = await createTestEdge({ numLayers: 4, agents: [{ layers: [0, 1] }, { layers: [1, 4] }] });
    const client = new LayerNet({ apiKey: edge.client.key, baseURL: 'http://edge.local', fetch: async (url, init) => edge.app.fetch(new Request(url, init)) });
    const lines = await showRoute(client, 'tiny-test', 'Hello');
    const text = lines.join('\n');
    expect(text).toContain(`hop 0: layers [0, 1) on agent ${edge.agents[0]!.id}`);
    expect(text).toContain(`hop 1: layers [1, 4) on agent ${edge.agents[1]!.id}`);
    expect(text).toContain('SDK re-verified: 16 chunks over 1 attempt(s)');
    expect(text).toContain('attempt 1 (completed)');
  });
});
