/**
 * `pool-agent register` with an imported model: it asks the edge which tokenizer files it lacks,
 * checks each against the manifest in the model folder (a missing or damaged file is named, and
 * nothing is sent) and uploads them as raw bytes, against a fake owner API.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestHash, type Manifest } from '../../protocol/manifest.js';
import { sha256Hex } from '../../protocol/bytes.js';
import { main } from '../../pool-agent/main.js';
import { captureIo as io, startFakeOwnerApi, type FakeOwnerApi } from '../support/agent-cli.js';
import { fakeModel } from '../support/fake-span.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'agent-register-tokenizer-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('register: an imported model', () => {
  let edgeUrl: string;
  let edge: FakeOwnerApi;
  const puts: { path: string; type: string | undefined; bytes: Buffer }[] = [];
  let held = new Map<string, Buffer>();
  let manifest: Manifest;
  const files = { 'tokenizer.json': Buffer.from('{"model":{"type":"BPE","vocab":{},"merges":[]}}'), 'tokenizer_config.json': Buffer.from('{"eos_token":"</s>"}') };

  beforeAll(async () => {
    const model = await fakeModel({ seed: 7 });
    manifest = {
      ...model.manifest,
      name: 'imported',
      tokenizer: {
        kind: 'hf-tokenizer',
        files: await Promise.all(Object.entries(files).map(async ([path, b]) => ({ path: path as 'tokenizer.json', sha256: await sha256Hex(b), bytes: b.length }))),
        bosTokenId: null,
        eosTokenIds: [2, 3],
      },
    };
    const modelId = await manifestHash(manifest);
    // A minimal owner API: what register calls, with the model's files endpoints.
    edge = await startFakeOwnerApi(async (req, send) => {
      const { url, body: raw } = req;
      if (req.method === 'GET' && url === '/v1/owner/pools') return send(200, { object: 'list', data: [{ id: 'pool-1', name: 'rack', region: 'eu-west', stake_micro_usd: 0, status: 'active' }] });
      if (req.method === 'POST' && url === '/v1/owner/models') return send(200, { id: modelId, created: false });
      if (req.method === 'GET' && url === `/v1/owner/models/${modelId}`) {
        return send(200, { id: modelId, name: 'imported', num_layers: 4, dtype: 'float32', tokenizer_files: manifest.tokenizer.kind === 'hf-tokenizer' ? manifest.tokenizer.files.map((f) => ({ path: f.path, bytes: f.bytes, uploaded: held.has(f.path) })) : [] });
      }
      const put = new RegExp(`^/v1/owner/models/${modelId}/files/(.+)$`).exec(url);
      if (req.method === 'PUT' && put) {
        puts.push({ path: put[1]!, type: req.headers['content-type'], bytes: raw });
        held.set(put[1]!, raw);
        return send(201, { model_id: modelId, path: put[1], bytes: raw.length, sha256: await sha256Hex(raw), created: true });
      }
      if (req.method === 'POST' && url === '/v1/owner/agents') return send(201, { agent_id: 'agt_9', pool_id: 'pool-1', edge_key_id: 'k1', edge_public_key: 'A'.repeat(43), heartbeat_url: 'http://x/hb', heartbeat_interval_ms: 15000 });
      if (req.method === 'PATCH') return send(200, { id: 'agt_9' });
      if (req.method === 'GET' && url === '/v1/edge/keys') return send(200, { keys: [{ id: 'k1', public_key: 'A'.repeat(43) }] });
    });
    edgeUrl = edge.url;
  });
  afterAll(() => edge?.close());

  const setup = async (name: string) => {
    const dir = join(root, `hf-${name}`);
    const modelDir = join(root, `hf-model-${name}`);
    await main(['init', '--dir', dir], io().io);
    await mkdir(modelDir, { recursive: true });
    await writeFile(join(modelDir, 'manifest.json'), JSON.stringify(manifest));
    for (const [path, b] of Object.entries(files)) await writeFile(join(modelDir, path), b);
    const args = ['register', '--dir', dir, '--edge', edgeUrl, '--token', 't', '--region', 'eu-west', '--price', '1', '--pool-name', 'rack', '--endpoint', 'http://agent.example', '--model', modelDir];
    return { dir, modelDir, args };
  };

  it('uploads the tokenizer files the edge lacks, as raw bytes, and nothing once it has them all', async () => {
    held = new Map([['tokenizer_config.json', files['tokenizer_config.json']]]);
    puts.length = 0;
    const { args } = await setup('ok');
    const a = io();
    expect(await main(args, a.io)).toBe(0);
    expect(JSON.parse(a.out.at(-1)!)).toMatchObject({ agentId: 'agt_9', tokenizerFilesUploaded: ['tokenizer.json'] });
    expect(puts).toHaveLength(1);
    expect(puts[0]).toMatchObject({ path: 'tokenizer.json', type: 'application/octet-stream' });
    expect(puts[0]!.bytes.equals(files['tokenizer.json'])).toBe(true);
    const b = io();
    expect(await main(args, b.io)).toBe(0);
    expect(JSON.parse(b.out.at(-1)!)).toMatchObject({ tokenizerFilesUploaded: [] });
    expect(puts).toHaveLength(1);
  });

  it('names a tokenizer file that is missing or damaged in the model folder, and sends nothing', async () => {
    held = new Map();
    puts.length = 0;
    const { modelDir, args } = await setup('bad');
    await rm(join(modelDir, 'tokenizer.json'));
    const missing = io();
    expect(await main(args, missing.io)).toBe(1);
    expect(missing.err.join('\n')).toMatch(/tokenizer file tokenizer\.json is missing from .*hf-model-bad/);

    const damaged = Buffer.from(files['tokenizer.json']);
    damaged[3] = damaged[3]! ^ 1;
    await writeFile(join(modelDir, 'tokenizer.json'), damaged);
    const hash = io();
    expect(await main(args, hash.io)).toBe(1);
    expect(hash.err.join('\n')).toMatch(/tokenizer\.json has SHA-256 [0-9a-f]{64}, the manifest says/);

    await writeFile(join(modelDir, 'tokenizer.json'), Buffer.concat([files['tokenizer.json'], Buffer.from(' ')]));
    const size = io();
    expect(await main(args, size.io)).toBe(1);
    expect(size.err.join('\n')).toMatch(new RegExp(`tokenizer\\.json is ${files['tokenizer.json'].length + 1} bytes, the manifest says ${files['tokenizer.json'].length}`));
    expect(puts).toHaveLength(0);
  });
});
