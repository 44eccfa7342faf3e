/**
 * The pool-agent CLI and its state: init (identity 0600, config), config validation (flags win,
 * bad fields named), hardware parsing, register against a fake edge that checks every body with
 * the protocol schemas and the proof signature, and signed heartbeats with a persisted seq.
 */
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyBytes } from '../../protocol/keys.js';
import { createPoolSchema, heartbeatBytes, heartbeatSchema, publishModelSchema, registerAgentSchema, registrationProofBytes } from '../../protocol/owner-api.js';
import { ConfigError, loadState, mergeSettings, saveState } from '../../pool-agent/config.js';
import { describeHardware, parseNvidiaSmi } from '../../pool-agent/hardware.js';
import { loadIdentity } from '../../pool-agent/identity.js';
import { main } from '../../pool-agent/main.js';
import { loadManifest } from '../../pool-agent/model/build.js';
import { runRegister } from '../../pool-agent/cli/register.js';
import { watchForBugs } from '../../pool-agent/cli/serve.js';
import { createLogger } from '../../pool-agent/log.js';
import { EventEmitter } from 'node:events';
import { startHeartbeats } from '../../pool-agent/server/heartbeat.js';
import { SessionManager } from '../../pool-agent/server/session-manager.js';
import { captureIo as io, startFakeOwnerApi, type FakeOwnerApi } from '../support/agent-cli.js';
import { fakeModel } from '../support/fake-span.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'agent-cli-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('init and configuration', () => {
  it('creates a 0600 identity and a valid config, keeps the identity on a second init', async () => {
    const dir = join(root, 'init');
    const a = io();
    expect(await main(['init', '--dir', dir], a.io)).toBe(0);
    const first = JSON.parse(a.out[0]!) as { publicKey: string; identity: string };
    expect(first.identity).toBe('created');
    expect((await stat(join(dir, 'identity.json'))).mode & 0o777).toBe(0o600);
    expect((await loadIdentity(dir)).publicKey).toBe(first.publicKey);
    const b = io();
    expect(await main(['init', '--dir', dir], b.io)).toBe(0);
    expect(JSON.parse(b.out[0]!)).toMatchObject({ identity: 'kept', publicKey: first.publicKey });
    await chmod(join(dir, 'identity.json'), 0o644);
    await expect(loadIdentity(dir)).rejects.toThrow(/readable by other users/);
  });

  it('lets flags win over the file and names bad fields', () => {
    expect(mergeSettings({ port: 8080, host: '0.0.0.0' }, { port: 0, host: undefined })).toMatchObject({ port: 0, host: '0.0.0.0' });
    expect(() => mergeSettings({ port: 'eighty' }, {})).toThrow(ConfigError);
    expect(() => mergeSettings({ port: 'eighty' }, {})).toThrow(/port/);
    expect(() => mergeSettings({ layers: [4, 2] }, {})).toThrow(/layers/);
    // What is kept for checks to disclose: bounded by default, the owner may set each bound, and a bad one is named.
    expect(mergeSettings({}, {}).disclosure).toEqual({ keepMinutes: 10, maxJobs: 512, maxMB: 256 });
    expect(mergeSettings({ disclosure: { keepMinutes: 30, maxMB: 1024 } }, {}).disclosure).toEqual({ keepMinutes: 30, maxJobs: 512, maxMB: 1024 });
    expect(() => mergeSettings({ disclosure: { maxMB: -1 } }, {})).toThrow(/disclosure/);
    expect(() => mergeSettings({ disclosure: { keepDays: 1 } }, {})).toThrow(/disclosure/);
    expect(() => mergeSettings({ typo: 1 }, {})).toThrow(/typo|Unrecognized/);
    expect(mergeSettings({}, {}).hopTransport).toBe('link');
    expect(mergeSettings({ hopTransport: 'link' }, { hopTransport: 'post' }).hopTransport).toBe('post');
    expect(() => mergeSettings({}, { hopTransport: 'carrier-pigeon' })).toThrow(/hopTransport/);
    expect(mergeSettings({}, {}).maxLinks).toBeUndefined();
    expect(mergeSettings({ maxLinks: 64 }, {}).maxLinks).toBe(64);
    expect(() => mergeSettings({ maxLinks: 0 }, {})).toThrow(/maxLinks/);
  });

  it('gives clear errors for unknown commands, unknown flags and an unregistered serve', async () => {
    const a = io();
    expect(await main(['frobnicate'], a.io)).toBe(2);
    expect(a.err[0]).toMatch(/unknown command/);
    const b = io();
    expect(await main(['serve', '--nope'], b.io)).toBe(2);
    expect(b.err[0]).toMatch(/--nope/);
    const c = io();
    const dir = join(root, 'unregistered');
    await main(['init', '--dir', dir], io().io);
    expect(await main(['serve', '--dir', dir], c.io)).toBe(2);
    expect(c.err[0]).toMatch(/not registered/);
    const d = io();
    expect(await main(['serve', '--help'], d.io)).toBe(0);
    expect(d.out[0]).toMatch(/Usage: pool-agent serve/);
    const e = io();
    expect(await main(['model', 'build', '--preset', 'huge'], e.io)).toBe(2);
    expect(e.err[0]).toMatch(/tiny, small, 1b/);
    const f = io();
    expect(await main(['model', 'build', '--preset', 'tiny', '--kv-cache', 'paged'], f.io)).toBe(2);
    expect(f.err[0]).toMatch(/--kv-cache must be append or full/);
  });

  it('model build writes the chosen KV-cache layout into the manifest', async () => {
    for (const layout of ['append', 'full'] as const) {
      const out = join(root, `model-${layout}`);
      const a = io();
      expect(await main(['model', 'build', '--preset', 'tiny', '--out', out, '--kv-cache', layout, '--dir', join(root, 'no-agent-state')], a.io)).toBe(0);
      expect(JSON.parse(a.out.at(-1)!)).toMatchObject({ kvCache: layout, numLayers: 4 });
      expect((await loadManifest(out)).kvCache).toBe(layout);
    }
  });
});

describe('serve: a bug that escapes', () => {
  it('is logged with its stack and drains the agent instead of killing its jobs; a second one exits 1 at once', () => {
    const proc = new EventEmitter();
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({ write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const stops: string[] = [];
    const exits: number[] = [];
    const bugs = watchForBugs(proc, log, (why) => stops.push(why), (code) => exits.push(code));
    expect(bugs.seen()).toBe(false);
    proc.emit('unhandledRejection', new Error('a promise nobody awaited'));
    expect(stops).toEqual(['unhandledRejection']);
    expect(exits).toEqual([]);
    expect(bugs.seen()).toBe(true);
    expect(lines[0]).toMatchObject({ level: 'error', error: 'a promise nobody awaited', stack: expect.stringContaining('agent-cli.test') });
    proc.emit('uncaughtException', new TypeError('x is undefined'));
    expect(exits).toEqual([1]);
    expect(stops).toHaveLength(1);
    bugs.remove();
    expect(proc.listenerCount('unhandledRejection') + proc.listenerCount('uncaughtException')).toBe(0);
  });
});

describe('hardware', () => {
  it('parses nvidia-smi csv output', () => {
    expect(parseNvidiaSmi('NVIDIA H100 80GB HBM3, 81559 MiB\nNVIDIA A10, 23028 MiB\n')).toEqual([
      { kind: 'cuda', name: 'NVIDIA H100 80GB HBM3', memoryBytes: 81559 * 1024 ** 2 },
      { kind: 'cuda', name: 'NVIDIA A10', memoryBytes: 23028 * 1024 ** 2 },
    ]);
    expect(parseNvidiaSmi('')).toEqual([]);
  });

  it('suggests --devices when the host has several GPUs', () => {
    const gpus = parseNvidiaSmi('NVIDIA A10, 23028 MiB\nNVIDIA A10, 23028 MiB\n');
    const text = describeHardware({ devices: gpus, memoryBytes: 64 * 1024 ** 3, platform: 'linux-x64' });
    expect(text).toMatch(/^GPU {2}NVIDIA A10, 22\.5 GiB$/m);
    expect(text).toMatch(/pool-agent serve --devices cuda:0,cuda:1$/m);
    expect(describeHardware({ devices: gpus.slice(0, 1), memoryBytes: 64 * 1024 ** 3, platform: 'linux-x64' })).not.toMatch(/--devices/);
  });
});

describe('register', () => {
  let edge: FakeOwnerApi;
  let edgeUrl: string;
  const calls: { method: string; path: string; body: unknown; auth: string | undefined }[] = [];
  const pools: { id: string; name: string; region: string; stake_micro_usd: number; status: string }[] = [];

  beforeAll(async () => {
    edge = await startFakeOwnerApi(async (req, send) => {
      const body = req.body.length ? JSON.parse(req.body.toString()) : undefined;
      calls.push({ method: req.method, path: req.url, body, auth: req.headers.authorization });
      if (req.headers.authorization !== 'Bearer owner-secret') return send(401, { error: { message: 'bad key', type: 'authentication_error', code: 'invalid_api_key', param: null } });
      if (req.method === 'GET' && req.url === '/v1/owner/pools') return send(200, { object: 'list', data: pools });
      if (req.method === 'POST' && req.url === '/v1/owner/pools') {
        const p = createPoolSchema.parse(body);
        const pool = { id: `pool-${pools.length + 1}`, name: p.name, region: p.region, stake_micro_usd: 0, status: 'active' };
        pools.push(pool);
        return send(201, pool);
      }
      if (req.method === 'POST' && req.url === '/v1/owner/models') {
        const m = publishModelSchema.parse(body);
        const { manifestHash } = await import('../../protocol/manifest.js');
        return send(200, { id: await manifestHash(m.manifest), name: m.manifest.name, num_layers: m.manifest.architecture.numLayers, dtype: m.manifest.dtype, created: true });
      }
      if (req.method === 'POST' && req.url === '/v1/owner/agents') {
        const r = registerAgentSchema.parse(body);
        const { proof, ...unsigned } = r;
        if (!(await verifyBytes(r.public_key, proof, registrationProofBytes(unsigned)))) return send(401, { error: { message: 'bad proof', type: 'authentication_error', code: 'invalid_signature', param: 'proof' } });
        return send(201, { agent_id: 'agt_1', pool_id: r.pool_id, edge_key_id: 'k1', edge_public_key: 'A'.repeat(43), heartbeat_url: `${edgeUrl}/v1/agents/agt_1/heartbeat`, heartbeat_interval_ms: 15000 });
      }
      if (req.method === 'PATCH' && req.url === '/v1/owner/agents/agt_1') return send(200, { id: 'agt_1', ...(body as object) });
      if (req.method === 'PATCH') return send(404, { error: { message: 'no such agent', type: 'not_found_error', code: 'not_found', param: null } });
      if (req.method === 'GET' && req.url === '/v1/edge/keys') return send(200, { keys: [{ id: 'k1', public_key: 'A'.repeat(43) }, { id: 'k2', public_key: 'B'.repeat(43) }] });
    });
    edgeUrl = edge.url;
  });
  afterAll(() => edge?.close());

  it('creates the pool, publishes the model, registers with a valid proof, stores the agent id and edge keys; reuses the pool', async () => {
    const dir = join(root, 'reg');
    const modelDir = join(root, 'model');
    const model = await fakeModel();
    await main(['init', '--dir', dir], io().io);
    await import('node:fs/promises').then((fs) => fs.mkdir(modelDir, { recursive: true }));
    await writeFile(join(modelDir, 'manifest.json'), JSON.stringify(model.manifest));
    const state = await loadState(dir);
    await saveState(dir, { ...state, bench: [{ modelId: model.modelId, layers: [0, 2], tokensPerS: 42.5, at: 1 }] });
    const args = ['--dir', dir, '--edge', edgeUrl, '--token', 'owner-secret', '--region', 'eu-west', '--price', '0.25', '--pool-name', 'rack-1', '--endpoint', 'https://agent.example.com', '--model', modelDir, '--layers', '0:2'];
    const hw = async () => ({ devices: [{ kind: 'cpu' as const, name: 'test cpu', memoryBytes: 1, cores: 2 }], memoryBytes: 1, platform: 'test' });
    const a = io();
    expect(await runRegister(args, a.io, { hardware: hw })).toBe(0);
    expect(JSON.parse(a.out[0]!)).toMatchObject({ agentId: 'agt_1', poolId: 'pool-1', modelId: model.modelId, layers: [0, 2] });
    const reg = calls.find((c) => c.path === '/v1/owner/agents')!.body as { throughput_tokens_per_s: number; spans: unknown; price: number };
    expect(reg).toMatchObject({ throughput_tokens_per_s: 42.5, spans: [{ model_id: model.modelId, layers: [0, 2] }], price: 0.25 });
    expect(await loadState(dir)).toMatchObject({ agentId: 'agt_1', poolId: 'pool-1', edgeKeys: { k1: 'A'.repeat(43), k2: 'B'.repeat(43) }, heartbeatIntervalMs: 15000 });
    const config = JSON.parse(await readFile(join(dir, 'pool-agent.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ region: 'eu-west', endpoint: 'https://agent.example.com' });
    expect(JSON.stringify(config)).not.toContain('owner-secret');

    // Registering again (a restart on another port): the pool is reused and the agent updated, not registered twice.
    const count = (method: string, path: string) => calls.filter((c) => c.method === method && c.path === path).length;
    const poolPosts = count('POST', '/v1/owner/pools');
    const agentPosts = count('POST', '/v1/owner/agents');
    const again = io();
    expect(await runRegister(args.map((x) => (x === 'https://agent.example.com' ? 'https://agent.example.com:8443' : x)), again.io, { hardware: hw })).toBe(0);
    expect(count('POST', '/v1/owner/pools')).toBe(poolPosts);
    expect(count('POST', '/v1/owner/agents')).toBe(agentPosts);
    expect(calls.at(-2)).toMatchObject({ method: 'PATCH', path: '/v1/owner/agents/agt_1', body: { endpoint: 'https://agent.example.com:8443', status: 'active' } });
    expect(JSON.parse(again.out[0]!)).toMatchObject({ agentId: 'agt_1', updated: true });
    expect((await loadState(dir)).heartbeatUrl).toBe(`${edgeUrl}/v1/agents/agt_1/heartbeat`);
    // The edge forgot the agent: a fresh registration.
    await saveState(dir, { ...(await loadState(dir)), agentId: 'agt_gone' });
    expect(await runRegister(args, io().io, { hardware: hw })).toBe(0);
    expect(count('POST', '/v1/owner/agents')).toBe(agentPosts + 1);
    expect((await loadState(dir)).agentId).toBe('agt_1');

    const bad = io();
    expect(await main(['register', ...args.map((x) => (x === 'owner-secret' ? 'wrong' : x))], bad.io)).toBe(1);
    expect(bad.err[0]).toMatch(/401/);
    const missing = io();
    expect(await main(['register', '--dir', dir, '--edge', edgeUrl, '--token', 't', '--region', 'eu-west', '--price', '1', '--endpoint', 'http://x.example', '--model', join(root, 'none')], missing.io)).toBe(1);
    expect(missing.err[0]).toMatch(/manifest/);
  });
});

describe('heartbeats', () => {
  it('signs heartbeats with a strictly increasing seq persisted across restarts', async () => {
    const dir = join(root, 'hb');
    await main(['init', '--dir', dir], io().io);
    const key = await loadIdentity(dir);
    const bodies: unknown[] = [];
    const fetch = async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(init.body as string));
      return new Response('{}', { status: 200 });
    };
    const core = { sessions: new SessionManager({ maxSessions: 4, maxKvBytes: 1000, idleMs: 1000 }), activeJobs: 0 };
    let now = 1_000;
    const a = startHeartbeats({ dir, agentId: 'agt_1', signingKey: key, url: 'http://edge/hb', intervalMs: 60_000, core, fetch, clock: () => now });
    await new Promise((r) => setTimeout(r, 50));
    expect(await a.beat()).toBe(200);
    a.stop();
    now = 10; // the clock went backwards: seq must still grow
    const b = startHeartbeats({ dir, agentId: 'agt_1', signingKey: key, url: 'http://edge/hb', intervalMs: 60_000, core, fetch, clock: () => now });
    await new Promise((r) => setTimeout(r, 50));
    b.stop();
    const parsed = bodies.map((x) => heartbeatSchema.parse(x));
    expect(parsed.length).toBe(3);
    for (let i = 1; i < parsed.length; i++) expect(parsed[i]!.seq).toBeGreaterThan(parsed[i - 1]!.seq);
    for (const h of parsed) {
      const { signature, ...unsigned } = h;
      expect(await verifyBytes(key.publicKey, signature, heartbeatBytes(unsigned))).toBe(true);
      expect(h).toMatchObject({ agent_id: 'agt_1', free_kv_bytes: 1000, active_sessions: 0 });
    }
  });

  it('serializes beats: concurrent calls and the timer never race on the seq file', async () => {
    const dir = join(root, 'hb-race');
    await main(['init', '--dir', dir], io().io);
    const key = await loadIdentity(dir);
    const seqs: number[] = [];
    const fetch = async (_url: string, init: RequestInit) => {
      seqs.push(heartbeatSchema.parse(JSON.parse(init.body as string)).seq);
      await new Promise((r) => setTimeout(r, 5));
      return new Response('{}', { status: 200 });
    };
    const core = { sessions: new SessionManager({ maxSessions: 4, maxKvBytes: 1000, idleMs: 1000 }), activeJobs: 0 };
    const hb = startHeartbeats({ dir, agentId: 'agt_1', signingKey: key, url: 'http://edge/hb', intervalMs: 60_000, core, fetch, clock: () => 5_000 });
    const statuses = await Promise.all(Array.from({ length: 8 }, () => hb.beat()));
    hb.stop();
    expect(statuses.every((st) => st === 200)).toBe(true);
    expect(seqs.length).toBe(9); // the first tick and eight beats
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBe(seqs[i - 1]! + 1);
  });

  it("reads the edge's answer to its end instead of cancelling it (a cancelled body resets the connection under the edge), but no further than 64 KiB", async () => {
    const dir = join(root, 'hb-answer');
    await main(['init', '--dir', dir], io().io);
    const key = await loadIdentity(dir);
    const answers: { pulled: number; cancelled: boolean }[] = [];
    const answer = (chunks: number, size: number) => {
      const seen = { pulled: 0, cancelled: false };
      answers.push(seen);
      return new ReadableStream<Uint8Array>({
        pull(c) {
          if (seen.pulled === chunks) return c.close();
          seen.pulled++;
          c.enqueue(new Uint8Array(size));
        },
        cancel() {
          seen.cancelled = true;
        },
      });
    };
    let big = false;
    const fetch = async () => new Response(big ? answer(1000, 1024) : answer(3, 10), { status: 200 });
    const core = { sessions: new SessionManager({ maxSessions: 4, maxKvBytes: 1000, idleMs: 1000 }), activeJobs: 0 };
    const hb = startHeartbeats({ dir, agentId: 'agt_1', signingKey: key, url: 'http://edge/hb', intervalMs: 60_000, core, fetch, clock: () => 7_000 });
    expect(await hb.beat()).toBe(200);
    big = true;
    expect(await hb.beat()).toBe(200);
    hb.stop();
    // The first tick's answer and the first beat's: read to the end, never cancelled.
    expect(answers.slice(0, 2)).toEqual([{ pulled: 3, cancelled: false }, { pulled: 3, cancelled: false }]);
    // A runaway answer: cancelled once past 64 KiB.
    expect(answers[2]!.cancelled).toBe(true);
    expect(answers[2]!.pulled).toBeLessThan(100);
  });
});
