/**
 * Completions on imported models (the `hf-tokenizer` kind) through the gateway and a fake agent
 * route: the prompt the agents get is the model's own chat template and tokenizer (tools
 * included), the ticket binds those ids and carries every stop id of the model, token-array
 * prompts go through as given, and a model whose tokenizer files are not uploaded is a 503.
 */
import { describe, expect, it } from 'vitest';
import { chatCompletionChunkSchema, chatCompletionSchema, completionSchema } from '../../protocol/api.js';
import { encodeTokenIds, sha256Hex } from '../../protocol/bytes.js';
import { errorEnvelopeSchema } from '../../protocol/errors.js';
import { createByteTokenizer } from '../../edge/text/byte-tokenizer.js';
import { createTokenizerProvider } from '../../edge/text/tokenizer-provider.js';
import { createTestEdge, readSse, type FakeAgentSpec } from './edge-fixtures.js';
import { hfModel, referenceTokenizer, uploadAll, type HfModelName } from './hf-model-fixtures.js';

const AGENTS: FakeAgentSpec[] = [{ layers: [0, 4] }];

/**
 * Edges whose store holds the files share one provider, so each tokenizer is built once per file
 * (the cache is keyed by model id, the same manifest in every edge).
 */
const shared = createTokenizerProvider({ builtin: createByteTokenizer() });

async function hfEdge(which: HfModelName, opts: { eosAtStep?: number; eosToken?: number; upload?: boolean } = {}) {
  const fixture = await hfModel(which);
  const upload = opts.upload ?? true;
  const edge = await createTestEdge({ manifest: fixture.manifest, agents: AGENTS, ...opts, ...(upload ? { tokenizers: shared } : {}) });
  if (upload) await uploadAll(edge.store, edge.modelId, fixture);
  return { edge, fixture, ref: referenceTokenizer(which, fixture) };
}

const TOOLS = [
  {
    type: 'function',
    function: { name: 'get_weather', description: 'Current weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
  },
];

describe('chat completions on an imported model', () => {
  it("sends the model's chat-template ids, bound by the ticket, with every stop id of the model", async () => {
    const { edge, ref } = await hfEdge('qwen3');
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello there' },
    ];
    const res = await edge.post('/v1/chat/completions', { model: 'qwen3-test', messages, max_tokens: 6, seed: 5 });
    expect(res.status).toBe(200);
    const body = chatCompletionSchema.parse(await res.json());
    const expectedIds = ref.encodeChat(messages, { addGenerationPrompt: true });
    expect(ref.decode(expectedIds, { skipSpecialTokens: false })).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n');
    const job = edge.agents[0]!.jobs[0]!;
    expect(job.promptIds).toEqual(expectedIds);
    const ticket = job.signedTicket.ticket;
    expect(ticket.inputHash).toBe(await sha256Hex(encodeTokenIds(expectedIds)));
    expect(ticket.stopTokenIds).toEqual([151_645, 151_643]);
    expect(body.usage.prompt_tokens).toBe(expectedIds.length);
    expect(body.choices[0]!.message.content).toBe(ref.decode(edge.expectedTokens(5, expectedIds, 6)));

    // Streamed, the model's own incremental decoder gives the same text.
    const streamed = await edge.post('/v1/chat/completions', { model: 'qwen3-test', messages, max_tokens: 6, seed: 5, stream: true });
    const { events } = await readSse(streamed);
    expect(events.at(-1)).toBe('[DONE]');
    const text = events.slice(0, -1).map((e) => chatCompletionChunkSchema.parse(JSON.parse(e)).choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(body.choices[0]!.message.content);
  });

  it('stops on each of the model’s stop ids, which never reach the client', async () => {
    for (const eos of [151_645, 151_643]) {
      const { edge } = await hfEdge('qwen3', { eosAtStep: 3, eosToken: eos });
      const res = await edge.post('/v1/chat/completions', { model: 'qwen3-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10, seed: 1 });
      const body = chatCompletionSchema.parse(await res.json());
      expect(body.choices[0]!.finish_reason, String(eos)).toBe('stop');
      expect(body.usage.completion_tokens, String(eos)).toBe(3);
      await edge.settle();
      const job = await edge.store.getJob(body.attestation.job_id, edge.client.record.accountId);
      expect(job?.tokenIds).toHaveLength(3);
      expect(job?.tokenIds).not.toContain(eos);
    }
  });

  it('hands tools, tool calls and tool results to the chat template (Qwen3 renders them)', async () => {
    const { edge, ref } = await hfEdge('qwen3');
    const messages = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '18 C, sunny' },
    ];
    const res = await edge.post('/v1/chat/completions', { model: 'qwen3-test', messages, tools: TOOLS, max_tokens: 2, seed: 1 });
    expect(res.status).toBe(200);
    const sent = edge.agents[0]!.jobs[0]!.promptIds;
    const rendered = ref.decode(sent, { skipSpecialTokens: false });
    expect(rendered).toContain('# Tools');
    expect(rendered).toContain('<tools>\n{"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city"');
    expect(rendered).toContain('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>');
    expect(rendered).toContain('<tool_response>\n18 C, sunny\n</tool_response>');
    expect(rendered.endsWith('<|im_start|>assistant\n')).toBe(true);
    // Exactly what the template gives for the same conversation.
    const templateMessages = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
      { role: 'tool', content: '18 C, sunny', tool_call_id: 'call_1' },
    ];
    expect(sent).toEqual(ref.encodeChat(templateMessages, { tools: TOOLS, addGenerationPrompt: true }));
    // Without tools the template has no tool section.
    expect(ref.renderChat([{ role: 'user', content: 'hi' }])).not.toContain('# Tools');
  });

  it('answers 503 (no_route) until the tokenizer files are uploaded, then serves', async () => {
    const { edge, fixture } = await hfEdge('qwen3', { upload: false });
    const chat = { model: 'qwen3-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, seed: 1 };
    const refused = await edge.post('/v1/chat/completions', chat);
    expect(refused.status).toBe(503);
    const { error } = errorEnvelopeSchema.parse(await refused.json());
    expect(error.code).toBe('no_route');
    expect(error.message).toContain('tokenizer files are not uploaded');
    expect(refused.headers.get('retry-after')).toBeTruthy();
    expect(edge.agents[0]!.jobs).toHaveLength(0);
    for (const f of fixture.files) {
      const put = await edge.app.request(`/v1/owner/models/${edge.modelId}/files/${f.path}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${edge.ownerKey.key}`, 'content-type': 'application/octet-stream' },
        body: f.content as BodyInit,
      });
      expect(put.status).toBe(201);
    }
    expect((await edge.post('/v1/chat/completions', chat)).status).toBe(200);
  });

  it('refuses more than 128 tools, an oversized tool, and tool calls outside assistant messages', async () => {
    const { edge } = await hfEdge('qwen3');
    const base = { model: 'qwen3-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };
    const many = await edge.post('/v1/chat/completions', { ...base, tools: Array.from({ length: 129 }, () => TOOLS[0]) });
    expect(many.status).toBe(400);
    expect(errorEnvelopeSchema.parse(await many.json()).error.param).toBe('tools');
    const huge = await edge.post('/v1/chat/completions', { ...base, tools: [{ type: 'function', function: { name: 'big', description: 'x'.repeat(65 * 1024) } }] });
    expect(huge.status).toBe(400);
    expect(errorEnvelopeSchema.parse(await huge.json()).error.message).toContain('65536 bytes of JSON');
    const misplaced = await edge.post('/v1/chat/completions', {
      ...base,
      messages: [{ role: 'user', content: 'hi', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] }],
    });
    expect(misplaced.status).toBe(400);
    expect(errorEnvelopeSchema.parse(await misplaced.json()).error.param).toBe('messages.0.tool_calls');
  });
});

describe('text completions on an imported model', () => {
  it('uses a token-array prompt as given, in both forms, and echoes its text', async () => {
    const { edge, ref } = await hfEdge('llama3');
    const text = await edge.post('/v1/completions', { model: 'llama3-test', prompt: 'Hello world', max_tokens: 2, seed: 1 });
    expect(text.status).toBe(200);
    expect(edge.agents[0]!.jobs[0]!.promptIds).toEqual(ref.encodePrompt('Hello world'));

    // A prompt the client templated itself (BOS and header tokens included), and ids no text
    // encodes to (two BOS): nothing is added, removed or re-tokenized.
    const templated = ref.encodeChat([{ role: 'user', content: 'Hello world' }]);
    for (const ids of [templated, [128_000, 128_000, 9906]]) {
      for (const prompt of [ids, [ids]]) {
        const res = await edge.post('/v1/completions', { model: 'llama3-test', prompt, max_tokens: 2, seed: 1, echo: true });
        expect(res.status).toBe(200);
        const body = completionSchema.parse(await res.json());
        expect(edge.agents[0]!.jobs.at(-1)!.promptIds).toEqual(ids);
        expect(body.usage!.prompt_tokens).toBe(ids.length);
        expect(body.choices[0]!.text.startsWith(ref.decode(ids))).toBe(true);
      }
    }
  });

  it("refuses a token id outside the model's vocabulary (param prompt)", async () => {
    const { edge } = await hfEdge('llama3');
    for (const prompt of [[1, 2, 128_256], [[5, 128_300]]]) {
      const res = await edge.post('/v1/completions', { model: 'llama3-test', prompt, max_tokens: 2 });
      expect(res.status).toBe(400);
      const { error } = errorEnvelopeSchema.parse(await res.json());
      expect(error.code).toBe('invalid_request');
      expect(error.param).toBe('prompt');
      expect(error.message).toContain('outside the model');
    }
    const negative = await edge.post('/v1/completions', { model: 'llama3-test', prompt: [1, -2], max_tokens: 2 });
    expect(negative.status).toBe(400);
    expect(edge.agents[0]!.jobs).toHaveLength(0);
  });
});
