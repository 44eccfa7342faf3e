/**
 * The owner's tokenizer-file routes: PUT /v1/owner/models/:id/files/:path takes exactly the bytes
 * the manifest pins (size and SHA-256), bounded while they arrive, idempotently; GET
 * /v1/owner/models/:id says which files the registry holds.
 */
import { describe, expect, it } from 'vitest';
import { errorEnvelopeSchema } from '../../protocol/errors.js';
import { modelFileUploadSchema, ownerModelSchema } from '../../protocol/owner-api.js';
import { createTestEdge, type TestEdge } from './edge-fixtures.js';
import { hfModel, type HfModelFixture } from './hf-model-fixtures.js';

async function setup(): Promise<{ edge: TestEdge; qwen: HfModelFixture }> {
  const qwen = await hfModel('qwen3');
  const edge = await createTestEdge({ manifest: qwen.manifest, agents: [] });
  return { edge, qwen };
}

const put = (edge: TestEdge, path: string, body: Uint8Array | ReadableStream<Uint8Array>, headers: Record<string, string> = {}, key = edge.ownerKey.key) =>
  edge.app.request(`/v1/owner/models/${edge.modelId}/files/${path}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream', ...headers },
    body: body as BodyInit,
    // A stream body needs it (undici).
    ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
  } as RequestInit);

const getModel = async (edge: TestEdge, id = edge.modelId) => {
  const res = await edge.app.request(`/v1/owner/models/${id}`, { headers: { authorization: `Bearer ${edge.ownerKey.key}` } });
  return { status: res.status, body: (await res.json()) as unknown };
};

const error = async (res: Response) => errorEnvelopeSchema.parse(await res.json()).error;

describe('tokenizer file uploads', () => {
  it('stores a file that matches the manifest (201), then answers 200 for the same file; GET says what is uploaded', async () => {
    const { edge, qwen } = await setup();
    const [json, config] = qwen.files;
    const before = ownerModelSchema.parse((await getModel(edge)).body);
    expect(before).toEqual({
      id: edge.modelId,
      name: 'qwen3-test',
      num_layers: 4,
      dtype: 'float32',
      tokenizer_files: [
        { path: 'tokenizer.json', bytes: json!.bytes, uploaded: false },
        { path: 'tokenizer_config.json', bytes: config!.bytes, uploaded: false },
      ],
    });

    const first = await put(edge, 'tokenizer.json', json!.content);
    expect(first.status).toBe(201);
    expect(modelFileUploadSchema.parse(await first.json())).toEqual({ model_id: edge.modelId, path: 'tokenizer.json', bytes: json!.bytes, sha256: json!.sha256, created: true });
    const again = await put(edge, 'tokenizer.json', json!.content);
    expect(again.status).toBe(200);
    expect(modelFileUploadSchema.parse(await again.json()).created).toBe(false);
    expect(Array.from((await edge.store.getModelFile(edge.modelId, 'tokenizer.json'))!.subarray(0, 64))).toEqual(Array.from(json!.content.subarray(0, 64)));

    const after = ownerModelSchema.parse((await getModel(edge)).body);
    expect(after.tokenizer_files.map((f) => [f.path, f.uploaded])).toEqual([
      ['tokenizer.json', true],
      ['tokenizer_config.json', false],
    ]);
    // By name too.
    expect(ownerModelSchema.parse((await getModel(edge, 'qwen3-test')).body).id).toBe(edge.modelId);
  });

  it('refuses a body whose SHA-256 or size differs from the manifest, saying which, and stores nothing', async () => {
    const { edge, qwen } = await setup();
    const config = qwen.files[1]!;
    const flipped = config.content.slice();
    flipped[10] = flipped[10]! ^ 1;
    const badHash = await put(edge, 'tokenizer_config.json', flipped);
    expect(badHash.status).toBe(400);
    const e1 = await error(badHash);
    expect(e1.code).toBe('invalid_request');
    expect(e1.message).toContain('SHA-256 differs');
    expect(e1.message).toContain(config.sha256);

    const short = await put(edge, 'tokenizer_config.json', config.content.subarray(0, config.bytes - 1));
    expect(short.status).toBe(400);
    const e2 = await error(short);
    expect(e2.message).toContain('size differs');
    expect(e2.message).toContain(`${config.bytes - 1} bytes`);
    expect(await edge.store.listModelFiles(edge.modelId)).toEqual([]);
  });

  it('cuts a body larger than the manifest says off while it arrives (413), with or without Content-Length', async () => {
    const { edge, qwen } = await setup();
    const config = qwen.files[1]!;
    const longer = new Uint8Array(config.bytes + 1);
    longer.set(config.content);
    const declared = await put(edge, 'tokenizer_config.json', longer);
    expect(declared.status).toBe(413);
    expect((await error(declared)).message).toContain(`${config.bytes} bytes in the manifest`);

    // No Content-Length: the reader stops at the manifest's size, long before the sender does.
    let sent = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        sent += 4096;
        c.enqueue(new Uint8Array(4096));
      },
    });
    const streamed = await put(edge, 'tokenizer_config.json', endless);
    expect(streamed.status).toBe(413);
    expect(sent).toBeLessThan(config.bytes + 64 * 1024);
    expect(await edge.store.listModelFiles(edge.modelId)).toEqual([]);
  });

  it('refuses paths the manifest does not list, unknown models, other media types and keys without the pool-owner scope', async () => {
    const { edge, qwen } = await setup();
    const json = qwen.files[0]!;
    for (const path of ['chat_template.jinja', 'vocab.txt', 'manifest.json']) {
      const res = await put(edge, path, json.content);
      expect(res.status, path).toBe(400);
      const e = await error(res);
      expect(e.param).toBe('path');
      expect(e.message).toContain('tokenizer.json, tokenizer_config.json');
    }
    const unknown = await edge.app.request(`/v1/owner/models/${'0'.repeat(64)}/files/tokenizer.json`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${edge.ownerKey.key}`, 'content-type': 'application/octet-stream' },
      body: json.content as BodyInit,
    });
    expect(unknown.status).toBe(404);
    expect((await getModel(edge, '0'.repeat(64))).status).toBe(404);
    expect((await put(edge, 'tokenizer.json', json.content, { 'content-type': 'application/json' })).status).toBe(415);
    expect((await put(edge, 'tokenizer.json', json.content, {}, edge.client.key)).status).toBe(403);
    expect(await edge.store.listModelFiles(edge.modelId)).toEqual([]);
  });

  it('a model of the built-in tokenizer has no files to upload', async () => {
    const edge = await createTestEdge({ agents: [] });
    expect(ownerModelSchema.parse((await getModel(edge)).body).tokenizer_files).toEqual([]);
    const res = await put(edge, 'tokenizer.json', new Uint8Array([123, 125]));
    expect(res.status).toBe(400);
    expect((await error(res)).message).toContain('built-in tokenizer');
  });
});
