/**
 * An imported Hugging Face checkpoint served end to end, through everything a built model goes
 * through: registration (tokenizer files uploaded to the registry), the edge's routing and its
 * own tokenizer and chat template for the model, a two-hop route over links, attestations,
 * TOPLOC re-execution checks by another owner's agent, failover. The checkpoint is a tiny random
 * Llama 3.2-style one (tied embeddings, llama3 rope scaling) with the real Llama 3 tokenizer; the
 * expected text comes from the independent float64 reference forward pass.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes, toBase64Url } from '../../protocol/bytes.js';
import { createHfTokenizer, type HfTokenizer } from '../../protocol/hf-tokenizer.js';
import { stopTokenIds } from '../../protocol/manifest.js';
import { importModel, type ImportedModel } from '../../pool-agent/model/import/import.js';
import { writeTinyCheckpoint } from '../support/hf-checkpoint.js';
import { greedyGenerate, loadReferenceModel, type ReferenceModel } from '../support/reference-forward.js';
import { checkStatus } from '../support/network-jobs.js';
import { otherOwnerToken, startNetwork, type NetworkAgent, type TestNetwork } from '../support/network.js';

const NAME = 'tiny-llama-3.2-imported';
const MESSAGES = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Wie geht es dir? 你好 👋' },
];
const MAX_TOKENS = 10;

let root: string;
let ckpt: string;
let imported: ImportedModel;
let tokenizer: HfTokenizer;
let reference: ReferenceModel;
let net: TestNetwork;
let whole: NetworkAgent;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'layernet-real-model-'));
  ckpt = join(root, 'ckpt');
  await writeTinyCheckpoint({ family: 'llama3', dir: ckpt, tokenizer: 'llama3', numLayers: 4, hiddenSize: 64, seed: 21 });
  imported = await importModel({ dir: ckpt, outDir: join(root, 'model'), name: NAME });
  tokenizer = createHfTokenizer({
    tokenizerJson: await readFile(join(ckpt, 'tokenizer.json'), 'utf8'),
    tokenizerConfig: await readFile(join(ckpt, 'tokenizer_config.json'), 'utf8'),
  });
  reference = await loadReferenceModel(ckpt);
  net = await startNetwork({
    modelDir: imported.dir,
    agents: [
      { name: 'head', region: 'eu-west', price: 0.1, layers: [0, 2] },
      { name: 'tail', region: 'eu-west', price: 0.1, layers: [2, 4] },
    ],
    edgeVars: { CHECK_SECRET: toBase64Url(randomBytes(32)), CHECK_RATE_OVERRIDE: '1' },
  });
  // Another owner's whole-model agent, priced out of routing: it checks the chain's jobs.
  whole = await net.addAgent({ name: 'whole-b', region: 'eu-west', price: 50, ownerToken: await otherOwnerToken(net, 'owner-b') });
  await net.waitForAgents(3);
}, 300_000);

afterAll(async () => {
  await net?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

/** The reference's greedy continuation, cut at the first stop id (which is not part of the text). */
function expectedIds(promptIds: number[]): number[] {
  const ids = greedyGenerate(reference, promptIds, MAX_TOKENS);
  const stops = new Set(stopTokenIds(imported.manifest));
  const cut = ids.findIndex((id) => stops.has(id));
  return cut < 0 ? ids : ids.slice(0, cut);
}

const client = () => new OpenAI({ baseURL: `${net.edgeUrl}/v1`, apiKey: net.apiKey, maxRetries: 0 });

describe('an imported checkpoint on the network', () => {
  it('is listed under its name', async () => {
    const models = await client().models.list();
    expect(models.data.map((m) => m.id)).toContain(NAME);
  });

  it('answers a chat with the text the reference forward pass gives, over a verified two-hop route, and passes its re-execution check', async () => {
    const promptIds = tokenizer.encodeChat(MESSAGES);
    const want = expectedIds(promptIds);
    const r = await client().chat.completions.create({ model: NAME, messages: MESSAGES, max_tokens: MAX_TOKENS, temperature: 0, route: { sort: 'price' } } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const body = r as unknown as { route: { hops: { agent_id: string }[] }; attestation: { verified: boolean; job_id: string } };
    expect(r.usage?.prompt_tokens).toBe(promptIds.length);
    expect(r.choices[0]!.message.content).toBe(tokenizer.decode(want));
    expect(r.usage?.completion_tokens).toBe(want.length === MAX_TOKENS ? MAX_TOKENS : want.length + 1);
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([net.agents[0]!.id, net.agents[1]!.id]);
    expect(body.attestation.verified).toBe(true);
    // Its first check status, whatever it is.
    const status = (await checkStatus(net, body.attestation.job_id, () => true)).checkStatus;
    expect(status).toBe('pass');
  }, 120_000);

  it('streams the same text, and takes a token-array prompt on /v1/completions', async () => {
    const stream = await client().chat.completions.create({ model: NAME, messages: MESSAGES, max_tokens: MAX_TOKENS, temperature: 0, stream: true, route: { sort: 'price' } } as OpenAI.ChatCompletionCreateParamsStreaming);
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toBe(tokenizer.decode(expectedIds(tokenizer.encodeChat(MESSAGES))));

    const promptIds = tokenizer.encodePrompt('The capital of France is');
    const c = await client().completions.create({ model: NAME, prompt: promptIds as unknown as string, max_tokens: 6, temperature: 0 });
    const want = greedyGenerate(reference, promptIds, 6);
    const stops = new Set(stopTokenIds(imported.manifest));
    const cut = want.findIndex((id) => stops.has(id));
    expect(c.choices[0]!.text).toBe(tokenizer.decode(cut < 0 ? want : want.slice(0, cut)));
    expect(c.usage?.prompt_tokens).toBe(promptIds.length);
  }, 120_000);

  it('fails over to another route when a hop dies, with the same greedy text', async () => {
    await net.agents[1]!.kill();
    const r = await client().chat.completions.create({ model: NAME, messages: MESSAGES, max_tokens: MAX_TOKENS, temperature: 0, route: { sort: 'price' } } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const body = r as unknown as { route: { hops: { agent_id: string }[] } };
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([whole.id]);
    expect(r.choices[0]!.message.content).toBe(tokenizer.decode(expectedIds(tokenizer.encodeChat(MESSAGES))));
  }, 120_000);
});
