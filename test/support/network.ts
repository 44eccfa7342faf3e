/**
 * A whole local network for integration tests: a fresh registry database (PGlite, or a new
 * database on DATABASE_URL's server), the edge Worker in workerd through `wrangler dev`, and
 * real pool agents (`pool-agent serve` child processes on onnxruntime-node) that join through
 * the same `pool-agent register` path a pool owner uses.
 *
 * @example
 * const net = await startNetwork({ agents: [{ name: 'a', region: 'eu-west', price: 0.2 }] });
 * const client = new OpenAI({ baseURL: `${net.edgeUrl}/v1`, apiKey: net.apiKey });
 * await net.close();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createDb, type Db } from '../../db/client.js';
import { createAccount, createApiKey } from '../../db/seed.js';
import { generateSigningKey } from '../../protocol/keys.js';
import { runInit } from '../../pool-agent/cli/init.js';
import { runRegister } from '../../pool-agent/cli/register.js';
import { loadState } from '../../pool-agent/config.js';
import { runScheduledTick, startEdgeProcess, type EdgeProcess, type EdgeProcessOptions } from '../../scripts/edge-process.js';
import { groupMembers, signal, waitUntil } from '../../scripts/processes.js';
import { freePort } from '../../scripts/ports.js';
import { waitListening } from './agents.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import { readTestModel, TEST_MODEL_DIR, testModel } from './model.js';

const REPO = resolve(import.meta.dirname, '../..');

export interface AgentSpec {
  name: string;
  region: string;
  /** USD per million tokens. */
  price: number;
  /** [start, end) layers; the whole model when absent. */
  layers?: [number, number];
  /** Extra `pool-agent serve` flags. */
  serveArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /**
   * The endpoint to register, given the port the agent will serve on (default: that port on
   * 127.0.0.1). Tests put a proxy in front of an agent this way (slow links, tampering).
   */
  endpointFor?: (servePort: number) => Promise<string>;
  /** Registers the agent with this pool-owner key (another owner's pool); the network's owner when absent. */
  ownerToken?: string;
}

export interface NetworkAgent {
  name: string;
  id: string;
  url: string;
  pid: number;
  region: string;
  dir: string;
  logs: string[];
  /** SIGKILL: the agent dies without a goodbye (failover tests). */
  kill(): Promise<void>;
  /** SIGTERM with a grace period. */
  stop(): Promise<void>;
}

export interface TestNetwork {
  edgeUrl: string;
  apiKey: string;
  ownerToken: string;
  accountId: string;
  modelName: string;
  modelId: string;
  numLayers: number;
  db: TestDatabase;
  /** A registry connection for assertions. */
  registry: Db;
  agents: NetworkAgent[];
  addAgent(spec: AgentSpec): Promise<NetworkAgent>;
  /** Waits until the edge's routing sees `count` agents with fresh heartbeats. */
  waitForAgents(count: number, timeoutMs?: number): Promise<void>;
  edgeLogs: string[];
  /**
   * The edge's process (wrangler and its workerd): `kill` ends its whole process group at once
   * (SIGKILL: a crash, connections reset) and resolves once nothing of it is left; `start` starts
   * it again on the same port with the same settings and resolves once it answers.
   */
  edgeProcess: EdgeControl;
  /** Runs the edge's scheduled trust tick once (the Cron Trigger's work, via wrangler's `/__scheduled`) and waits for it. */
  tick(): Promise<void>;
  close(): Promise<void>;
}

export interface EdgeControl {
  /** wrangler's pid (its process group's id); undefined while stopped. */
  readonly pid: number | undefined;
  kill(): Promise<void>;
  start(): Promise<void>;
}

export interface StartNetworkOptions {
  agents: AgentSpec[];
  /** Extra Worker variables (timeouts, cache TTLs). */
  edgeVars?: Record<string, string>;
  /** The model the agents serve (a built or imported folder); the shared tiny model when absent. */
  modelDir?: string;
  /**
   * The registry database, migrated (e.g. `startRegistryProcess()`, which a test can stop and
   * restart); a fresh `createTestDatabase()` when absent. The network closes it either way.
   */
  database?: TestDatabase;
}

export async function startNetwork(opts: StartNetworkOptions): Promise<TestNetwork> {
  const modelDir = opts.modelDir ?? TEST_MODEL_DIR;
  const model = opts.modelDir ? await readTestModel(opts.modelDir) : await testModel();
  const db = opts.database ?? (await createTestDatabase());
  const registry = createDb(db.url, { max: 2 });
  const cleanups: (() => Promise<unknown>)[] = [() => db.close(), () => registry.close()];
  const agents: NetworkAgent[] = [];
  const edgeLogs: string[] = [];
  let edge: EdgeProcess | undefined;
  const close = async () => {
    await Promise.allSettled(agents.map((a) => a.kill()));
    await edge?.stop();
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    const account = await createAccount(registry.db, { name: 'test', kind: 'user' });
    const apiKey = await createApiKey(registry.db, { accountId: account.id, scopes: ['inference'], name: 'test inference' });
    const owner = await createApiKey(registry.db, { accountId: account.id, scopes: ['pool-owner'], name: 'test owner' });
    const edgeKey = await generateSigningKey();
    const stateDir = await mkdtemp(join(tmpdir(), 'layernet-edge-'));
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
    const edgeOptions: EdgeProcessOptions = {
      port: await freePort(),
      stateDir,
      vars: {
        DATABASE_URL: db.url,
        EDGE_SIGNING_KEY: edgeKey.privateKeyPkcs8,
        EDGE_KEY_ID: 'edge-test',
        EDGE_LOCATION: 'test',
        KEY_CACHE_TTL_MS: '500',
        CANDIDATE_CACHE_TTL_MS: '300',
        ...opts.edgeVars,
      },
      onLog: (l) => {
        if (edgeLogs.length < 5000) edgeLogs.push(l);
      },
    };
    edge = await startEdgeProcess(edgeOptions);
    const edgeUrl = edge.url;
    const edgeProcess: EdgeControl = {
      get pid() {
        return edge?.pid;
      },
      async kill() {
        const pgid = edge?.pid;
        if (pgid === undefined) return;
        signal(-pgid, 'SIGKILL');
        if (!(await waitUntil(() => groupMembers(pgid).length === 0, 10_000))) throw new Error(`the edge's process group ${pgid} is still there after SIGKILL`);
        edge = undefined;
      },
      async start() {
        if (edge) return;
        edge = await startEdgeProcess(edgeOptions);
      },
    };

    const addAgent = async (spec: AgentSpec): Promise<NetworkAgent> => {
      const dir = await mkdtemp(join(tmpdir(), `layernet-agent-${spec.name}-`));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      const io = { out: () => undefined, err: (l: string) => edgeLogs.push(`[${spec.name}] ${l}`), env: { ...process.env, LAYERNET_OWNER_TOKEN: spec.ownerToken ?? owner.key } };
      if ((await runInit(['--dir', dir], io)) !== 0) throw new Error(`pool-agent init failed for ${spec.name}`);
      const port = await freePort();
      const layers = spec.layers ?? [0, model.numLayers];
      const reg = await runRegister(
        ['--dir', dir, '--edge', edgeUrl, '--region', spec.region, '--price', String(spec.price), '--pool-name', `pool-${spec.region}`,
          '--endpoint', spec.endpointFor ? await spec.endpointFor(port) : `http://127.0.0.1:${port}`, '--model', modelDir, '--layers', `${layers[0]}:${layers[1]}`],
        io,
      );
      if (reg !== 0) throw new Error(`pool-agent register failed for ${spec.name}: ${edgeLogs.slice(-3).join('\n')}`);
      const state = await loadState(dir);
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', join(REPO, 'pool-agent/main.ts'), 'serve', '--dir', dir, '--host', '127.0.0.1', '--port', String(port),
          '--model', modelDir, '--layers', `${layers[0]}:${layers[1]}`, '--threads', '1', ...(spec.serveArgs ?? [])],
        { cwd: REPO, env: { ...process.env, ...spec.env }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const agent = await listeningAgent(child, spec, dir, state.agentId!);
      agents.push(agent);
      return agent;
    };
    for (const spec of opts.agents) await addAgent(spec);

    const net: TestNetwork = {
      edgeUrl,
      apiKey: apiKey.key,
      ownerToken: owner.key,
      accountId: account.id,
      modelName: model.manifest.name,
      modelId: model.modelId,
      numLayers: model.numLayers,
      db,
      registry,
      agents,
      addAgent,
      edgeLogs,
      edgeProcess,
      tick: () => runScheduledTick(edgeUrl),
      close,
      async waitForAgents(count, timeoutMs = 30_000) {
        const deadline = Date.now() + timeoutMs;
        let last = '';
        while (Date.now() < deadline) {
          const res = await fetch(`${edgeUrl}/v1/pools`);
          last = `${res.status} ${await res.clone().text()}`;
          if (res.ok) {
            const body = (await res.json()) as { data: { agents: { last_heartbeat_at: string | null }[] }[] };
            const live = body.data.flatMap((p) => p.agents).filter((a) => a.last_heartbeat_at !== null).length;
            if (live >= count) return;
          }
          await new Promise((r) => setTimeout(r, 200));
        }
        throw new Error(`fewer than ${count} agents with heartbeats after ${timeoutMs} ms; /v1/pools: ${last.slice(0, 2000)}\nagent logs: ${agents.map((a) => a.logs.slice(-5).join('\n')).join('\n')}\nedge: ${edgeLogs.slice(-10).join('\n')}`);
      },
    };
    return net;
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * The pool-owner key of a new account: agents registered with it (`AgentSpec.ownerToken`) belong
 * to another owner than the network's, so they may check its agents' jobs.
 */
export async function otherOwnerToken(net: TestNetwork, name: string): Promise<string> {
  const account = await createAccount(net.registry.db, { name, kind: 'user' });
  return (await createApiKey(net.registry.db, { accountId: account.id, scopes: ['pool-owner'], name: `${name} owner` })).key;
}

async function listeningAgent(child: ChildProcess, spec: AgentSpec, dir: string, id: string): Promise<NetworkAgent> {
  const logs: string[] = [];
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
  };
  const url = await waitListening(child, logs, spec.name);
  return { name: spec.name, id, url, pid: child.pid!, region: spec.region, dir, logs, kill, stop };
}
