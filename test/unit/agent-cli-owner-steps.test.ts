/**
 * What the README's pool-owner steps rely on, command by command: every subcommand takes --dir
 * (the state folder) and answers an unknown or valueless flag with one plain line and its usage;
 * model build and model import record the folder they wrote as modelDir (only where init made a
 * state folder), so bench, register and serve need no --model; register records where serve
 * listens (the endpoint's port, its host when it is this machine's) and the span it promised;
 * serve refuses another span and warns on another port.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestHash } from '../../protocol/manifest.js';
import { CliError } from '../../pool-agent/cli/args.js';
import { runRegister, type RegisterDeps } from '../../pool-agent/cli/register.js';
import { explicitPort, listenAddressFor, portWarning, spanRefusal, type Registration } from '../../pool-agent/cli/registration.js';
import { loadState } from '../../pool-agent/config.js';
import { main } from '../../pool-agent/main.js';
import { loadManifest } from '../../pool-agent/model/build.js';
import { captureIo } from '../support/agent-cli.js';
import { writeTinyCheckpoint } from '../support/hf-checkpoint.js';
import { fakeModel } from '../support/fake-span.js';
import { TEST_MODEL_DIR } from '../support/model.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'agent-owner-steps-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A CLI io whose default state folder ($LAYERNET_AGENT_DIR) never exists: nothing lands in ~. */
const io = () => captureIo({ LAYERNET_AGENT_DIR: join(root, 'never-made') });

const exists = (path: string) => stat(path).then(() => true, () => false);
const configOf = async (dir: string) => JSON.parse(await readFile(join(dir, 'pool-agent.json'), 'utf8')) as Record<string, unknown>;

/** The owner API as register calls it, answered in memory. */
function fakeEdge(): RegisterDeps & { calls: { method: string; path: string; body: unknown }[] } {
  const calls: { method: string; path: string; body: unknown }[] = [];
  const pools: unknown[] = [];
  const json = (status: number, data: unknown) => new Response(JSON.stringify(data), { status, headers: { 'content-type': 'application/json' } });
  return {
    calls,
    hardware: async () => ({ devices: [{ kind: 'cpu', name: 'test cpu', memoryBytes: 1, cores: 2 }], memoryBytes: 1, platform: 'test' }),
    localAddresses: () => ['127.0.0.1', '10.1.2.3'],
    fetch: async (url, init) => {
      const path = new URL(url).pathname;
      const body = typeof init.body === 'string' ? JSON.parse(init.body) : undefined;
      calls.push({ method: init.method!, path, body });
      if (init.method === 'GET' && path === '/v1/owner/pools') return json(200, { object: 'list', data: pools });
      if (init.method === 'POST' && path === '/v1/owner/pools') {
        const pool = { id: 'pool-1', name: body.name, region: body.region, stake_micro_usd: 0, status: 'active' };
        pools.push(pool);
        return json(201, pool);
      }
      if (init.method === 'POST' && path === '/v1/owner/models') return json(200, { id: await manifestHash(body.manifest), name: 'm', num_layers: 4, dtype: 'float32', created: true });
      if (init.method === 'POST' && path === '/v1/owner/agents') {
        return json(201, { agent_id: 'agt_1', pool_id: body.pool_id, edge_key_id: 'k1', edge_public_key: 'A'.repeat(43), heartbeat_url: 'http://edge.test/v1/agents/agt_1/heartbeat', heartbeat_interval_ms: 15000 });
      }
      if (init.method === 'PATCH' && path === '/v1/owner/agents/agt_1') return json(200, { id: 'agt_1' });
      if (init.method === 'GET' && path === '/v1/edge/keys') return json(200, { keys: [{ id: 'k1', public_key: 'A'.repeat(43) }] });
      return json(404, { error: { message: `no route ${path}`, type: 'not_found_error', code: 'not_found', param: null } });
    },
  };
}

const registerArgs = (dir: string, endpoint: string, ...more: string[]) => ['--dir', dir, '--edge', 'http://edge.test', '--token', 't', '--region', 'eu-west', '--price', '0.2', '--endpoint', endpoint, ...more];

describe('flags', () => {
  const commands: [string[], RegExp][] = [
    [['init'], /Usage: pool-agent init/],
    [['hardware'], /Usage: pool-agent hardware/],
    [['model', 'build'], /Usage: pool-agent model build/],
    [['model', 'import', 'CKPT'], /pool-agent model import/],
    [['bench'], /Usage: pool-agent bench/],
    [['register'], /Usage: pool-agent register/],
    [['serve'], /Usage: pool-agent serve/],
  ];

  it('an unknown flag is one plain line naming it, then the command usage (never node parser text)', async () => {
    for (const [cmd, usage] of commands) {
      const a = io();
      expect(await main([...cmd, '--bogus', 'x'], a.io)).toBe(2);
      const text = a.err.join('\n');
      expect(text.split('\n')[0]).toBe(`pool-agent ${cmd.slice(0, 2).filter((c) => c !== 'CKPT').join(' ')}: unknown flag --bogus`);
      expect(text).toMatch(usage);
      expect(text).not.toMatch(/positional argument|ERR_PARSE_ARGS/);
    }
  });

  it('names a near spelling, a flag missing its value and a value given to a switch', async () => {
    const typo = io();
    expect(await main(['bench', '--modle', 'x'], typo.io)).toBe(2);
    expect(typo.err[0]).toMatch(/^pool-agent bench: unknown flag --modle \(did you mean --model\?\)$/m);
    const missing = io();
    expect(await main(['serve', '--dir'], missing.io)).toBe(2);
    expect(missing.err[0]).toMatch(/^pool-agent serve: --dir needs a value \(--dir VALUE\)$/m);
    const ambiguous = io();
    expect(await main(['init', '--dir', '--force'], ambiguous.io)).toBe(2);
    expect(ambiguous.err[0]).toMatch(/--dir needs a value/);
    const switchValue = io();
    expect(await main(['init', '--force=yes'], switchValue.io)).toBe(2);
    expect(switchValue.err[0]).toMatch(/--force takes no value/);
    const short = io();
    expect(await main(['hardware', '-x'], short.io)).toBe(2);
    expect(short.err[0]).toMatch(/^pool-agent hardware: unknown flag -x$/m);
  });

  it('every subcommand takes --dir', async () => {
    const dir = join(root, 'dir-everywhere');
    expect(await main(['init', '--dir', dir], io().io)).toBe(0);
    const hw = io();
    expect(await main(['hardware', '--dir', dir, '--json'], hw.io)).toBe(0);
    expect(JSON.parse(hw.out[0]!)).toHaveProperty('devices');
    const built = io();
    expect(await main(['model', 'build', '--dir', dir, '--preset', 'tiny', '--out', TEST_MODEL_DIR], built.io)).toBe(0);
    expect(JSON.parse(built.out.at(-1)!)).toMatchObject({ dir: TEST_MODEL_DIR, recorded: join(dir, 'pool-agent.json') });
    for (const cmd of [['bench'], ['register'], ['serve']]) {
      const a = io();
      expect(await main([...cmd, '--dir', dir, '--help'], a.io)).toBe(0);
      expect(a.out[0]).toMatch(/--dir DIR/);
    }
  });
});

describe('model build and model import record the model folder', () => {
  it('nowhere when the state folder does not exist, and say so; it is not created', async () => {
    const dir = join(root, 'no-state');
    const a = io();
    expect(await main(['model', 'build', '--dir', dir, '--preset', 'tiny', '--out', TEST_MODEL_DIR], a.io)).toBe(0);
    expect(JSON.parse(a.out.at(-1)!)).toMatchObject({ recorded: null });
    expect(a.err.join('\n')).toMatch(new RegExp(`no state folder ${dir}.*pool-agent init.*--model ${TEST_MODEL_DIR}`));
    expect(await exists(dir)).toBe(false);
  });

  it('as modelDir in pool-agent.json after init, so bench and register need no --model; a later import replaces it', async () => {
    const dir = join(root, 'recorded');
    expect(await main(['init', '--dir', dir], io().io)).toBe(0);
    const a = io();
    expect(await main(['model', 'build', '--dir', dir, '--preset', 'tiny', '--out', TEST_MODEL_DIR], a.io)).toBe(0);
    expect(a.err.join('\n')).toMatch(/modelDir .* recorded in .*pool-agent\.json: bench, register and serve use it without --model/);
    expect(await configOf(dir)).toMatchObject({ modelDir: TEST_MODEL_DIR, host: '127.0.0.1', port: 0 });

    const bench = io();
    expect(await main(['bench', '--dir', dir, '--layers', '0:4', '--tokens', '2', '--threads', '1'], bench.io)).toBe(0);
    const modelId = await manifestHash(await loadManifest(TEST_MODEL_DIR));
    expect(JSON.parse(bench.out.at(-1)!)).toMatchObject({ modelId, layers: [0, 4] });

    const reg = io();
    expect(await runRegister(registerArgs(dir, 'http://127.0.0.1:7123', '--layers', '0:4'), reg.io, fakeEdge())).toBe(0);
    expect(JSON.parse(reg.out[0]!)).toMatchObject({ modelId, layers: [0, 4] });
    expect(reg.err.join('\n')).not.toMatch(/warning/);

    // An imported model replaces it; the agent is registered for the built one, which is said.
    const ckpt = join(root, 'ckpt');
    await writeTinyCheckpoint({ family: 'mistral', dir: ckpt, numLayers: 2 });
    await writeFile(join(ckpt, 'tokenizer.json'), JSON.stringify({ version: '1.0', added_tokens: [], model: { type: 'WordLevel', vocab: { '<unk>': 0 }, unk_token: '<unk>' } }));
    const imported = io();
    const out = join(root, 'imported');
    expect(await main(['model', 'import', ckpt, '--out', out, '--dir', dir], imported.io)).toBe(0);
    expect(JSON.parse(imported.out.at(-1)!)).toMatchObject({ recorded: join(dir, 'pool-agent.json') });
    expect(imported.err.join('\n')).toMatch(new RegExp(`recorded in .*\\(was ${TEST_MODEL_DIR}\\)`));
    expect(imported.err.join('\n')).toMatch(/registered for another model .*register.* again before serve/);
    expect((await configOf(dir)).modelDir).toBe(out);
  });

  it('with no model anywhere, bench, register and serve say how to get one', async () => {
    const dir = join(root, 'no-model');
    expect(await main(['init', '--dir', dir], io().io)).toBe(0);
    const a = io();
    expect(await main(['bench', '--dir', dir], a.io)).toBe(2);
    expect(a.err[0]).toMatch(/no model: pass --model DIR.*model build.*model import.*record/);
  });
});

describe('register records where serve listens and what it serves', () => {
  it("the endpoint's port (and the span) for serve; --port behind a proxy", async () => {
    const dir = join(root, 'listen');
    expect(await main(['init', '--dir', dir], io().io)).toBe(0);
    const a = io();
    expect(await runRegister(registerArgs(dir, 'http://127.0.0.1:7123', '--model', TEST_MODEL_DIR, '--layers', '0:2'), a.io, fakeEdge())).toBe(0);
    expect(JSON.parse(a.out[0]!)).toMatchObject({ listen: { host: '127.0.0.1', port: 7123 } });
    expect(await configOf(dir)).toMatchObject({ port: 7123, host: '127.0.0.1', layers: [0, 2], endpoint: 'http://127.0.0.1:7123' });
    const modelId = await manifestHash(await loadManifest(TEST_MODEL_DIR));
    expect((await loadState(dir)).registration).toEqual({ endpoint: 'http://127.0.0.1:7123', modelId, layers: [0, 2], port: 7123 });

    const proxied = io();
    expect(await runRegister(registerArgs(dir, 'https://agent.example.com', '--port', '9000'), proxied.io, fakeEdge())).toBe(0);
    expect(await configOf(dir)).toMatchObject({ port: 9000, host: '127.0.0.1', layers: [0, 2] });
    expect((await loadState(dir)).registration).toMatchObject({ endpoint: 'https://agent.example.com', port: 9000 });
    // A public name with the agent on loopback: said, not silently unreachable.
    expect(proxied.err.join('\n')).toMatch(/warning: serve binds 127\.0\.0\.1, which other machines cannot reach.*"host": "0\.0\.0\.0"/);
  });

  it("the endpoint's host when it is this machine's address", async () => {
    const dir = join(root, 'listen-host');
    expect(await main(['init', '--dir', dir], io().io)).toBe(0);
    const a = io();
    expect(await runRegister(registerArgs(dir, 'http://10.1.2.3:7000', '--model', TEST_MODEL_DIR), a.io, fakeEdge())).toBe(0);
    expect(await configOf(dir)).toMatchObject({ host: '10.1.2.3', port: 7000 });
    expect(a.err.join('\n')).toMatch(/note: serve binds 10\.1\.2\.3/);
  });

  it('a bad --port is a usage error', async () => {
    const dir = join(root, 'listen-bad');
    await expect(runRegister(registerArgs(dir, 'http://127.0.0.1:7000', '--port', '70000'), io().io, fakeEdge())).rejects.toThrow(CliError);
  });
});

describe('serve keeps to the registration', () => {
  it('refuses another span or another model before loading anything, naming register', async () => {
    const dir = join(root, 'serve-span');
    expect(await main(['init', '--dir', dir], io().io)).toBe(0);
    expect(await runRegister(registerArgs(dir, 'http://127.0.0.1:7124', '--model', TEST_MODEL_DIR, '--layers', '0:4'), io().io, fakeEdge())).toBe(0);

    const span = io();
    expect(await main(['serve', '--dir', dir, '--layers', '1:3'], span.io)).toBe(2);
    expect(span.err[0]).toMatch(/^pool-agent serve: layers 1:3 differ from the span registered at the edge \(0:4\).*every one would fail.*pool-agent register --layers 1:3/);

    const other = await fakeModel({ numLayers: 4, seed: 9 });
    const otherDir = join(root, 'other-model');
    await mkdir(otherDir, { recursive: true });
    await writeFile(join(otherDir, 'manifest.json'), JSON.stringify(other.manifest));
    const model = io();
    expect(await main(['serve', '--dir', dir, '--model', otherDir], model.io)).toBe(2);
    expect(model.err[0]).toMatch(new RegExp(`model in this folder \\(${other.modelId}\\) is not the one registered.*pool-agent register`));
  });

  it('spanRefusal and portWarning', () => {
    const reg: Registration = { endpoint: 'http://h.example:7000', modelId: 'm1', layers: [0, 4], port: 7000 };
    expect(spanRefusal(reg, { modelId: 'm1', layers: [0, 4] })).toBeUndefined();
    expect(spanRefusal(undefined, { modelId: 'm2', layers: [1, 2] })).toBeUndefined();
    expect(spanRefusal(reg, { modelId: 'm1', layers: [0, 2] })).toMatch(/register/);
    expect(spanRefusal(reg, { modelId: 'm2', layers: [0, 4] })).toMatch(/register/);
    expect(portWarning(reg, 7000)).toBeUndefined();
    expect(portWarning({ ...reg, port: undefined }, 7001)).toBeUndefined();
    expect(portWarning(reg, 7001)).toMatch(/listening on port 7001, not 7000.*http:\/\/h\.example:7000.*proxy or port forward/);
  });

  it('listenAddressFor: explicit ports, kept wildcard hosts, warnings for an unknown port', () => {
    expect(explicitPort('http://h:80')).toBe(80);
    expect(explicitPort('https://h.example/path')).toBeUndefined();
    expect(explicitPort('http://[::1]:7000')).toBe(7000);
    expect(explicitPort('http://user:pw@h:81/x')).toBe(81);
    expect(listenAddressFor('http://[::1]:7000', { host: '127.0.0.1', port: 0 })).toEqual({ host: '127.0.0.1', port: 7000, notes: [], warnings: [] });
    expect(listenAddressFor('http://203.0.113.7:7000', { host: '0.0.0.0', port: 0 })).toEqual({ host: '0.0.0.0', port: 7000, notes: [], warnings: [] });
    const moved = listenAddressFor('http://127.0.0.1:7000', { host: '127.0.0.1', port: 8000 });
    expect(moved.port).toBe(7000);
    expect(moved.notes[0]).toMatch(/register --port 8000/);
    // A port the last registration recorded moves without a word.
    expect(listenAddressFor('http://127.0.0.1:7000', { host: '127.0.0.1', port: 8000 }, { registeredPort: 8000 }).notes).toEqual([]);
    const unknown = listenAddressFor('https://a.example', { host: '0.0.0.0', port: 0 });
    expect(unknown.port).toBe(0);
    expect(unknown.warnings[0]).toMatch(/names no port.*register --port/);
  });
});
