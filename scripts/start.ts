/**
 * `npm start`: the whole local network on this machine.
 *
 *   npm start [-- --port 8787] [--agents-only] [--help]
 *
 * 1. Registry: `DATABASE_URL` when set, else embedded PGlite persisted in `.data/registry`,
 *    served over the Postgres wire protocol on 127.0.0.1 (port picked by the OS).
 * 2. Migrations, then a demo account with an inference API key and a pool-owner token (reused
 *    on the next start while they still verify: keys are shown once, so they live in
 *    `.dev/stack.json`, which is git-ignored and 0600).
 * 3. The tiny demo model in `.models/tiny` (built once, with a progress bar), or the model
 *    `--model DIR` names: a folder holding manifest.json (built or imported), or a Hugging Face
 *    checkpoint folder, imported once into `.models/<its name>`.
 * 4. The edge in workerd through `wrangler dev` on 127.0.0.1:PORT.
 * 5. Three pool agents in two regions at different prices, each joining through the same
 *    `pool-agent init / register / serve` path a real pool owner uses.
 * 6. `.dev/stack.json` and a ready-to-paste curl line. Ctrl-C stops every process started here
 *    (by pid) and leaves the data intact.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createDb, redactDatabaseUrl } from '../db/client.js';
import { startEmbeddedRegistry, type EmbeddedRegistry } from '../db/embedded.js';
import { migrate } from '../db/migrate.js';
import { createAccount, createApiKey, upsertModel } from '../db/seed.js';
import { hashApiKey, parseApiKey } from '../protocol/api-key.js';
import { manifestHash } from '../protocol/manifest.js';
import { generateSigningKey } from '../protocol/keys.js';
import { randomBytes, toBase64Url } from '../protocol/bytes.js';
import { buildModel, loadManifest, type BuiltModel } from '../pool-agent/model/build.js';
import { defaultModelName, importModel } from '../pool-agent/model/import/import.js';
import { CheckpointError } from '../pool-agent/model/import/safetensors.js';
import { loadState } from '../pool-agent/config.js';
import { createProgressBar } from '../pool-agent/model/progress.js';
import { startEdgeProcess, type EdgeProcess } from './edge-process.js';
import { freePort } from './ports.js';

const ROOT = resolve(import.meta.dirname, '..');
const DEV = join(ROOT, '.dev');
const STACK_FILE = join(DEV, 'stack.json');
const SECRETS_FILE = join(DEV, 'secrets.json');
const MODEL_DIR = join(ROOT, '.models', 'tiny');
const DATA_DIR = join(ROOT, '.data', 'registry');
const AGENT_BIN = join(ROOT, 'pool-agent', 'bin.mjs');

const USAGE = `usage: npm start [-- --port 8787] [--model DIR]

Starts the local network: registry, edge (workerd), three pool agents, the tiny demo model.
  --port N      edge port on 127.0.0.1 (default 8787)
  --model DIR   serve this model instead: a Hugging Face checkpoint folder (imported once into
                .models/<its name>, float32) or a folder from pool-agent model build/import
  --help        this text`;

/**
 * The demo agents: two regions, different prices, one whole-model agent and a two-hop chain.
 * The whole-model agent belongs to a second pool owner, so it can independently re-execute
 * (check) jobs served by the chain.
 */
const AGENTS = [
  { name: 'eu-whole', owner: 'second', region: 'eu-west', price: 0.4, layers: 'all' },
  { name: 'eu-head', owner: 'demo', region: 'eu-west', price: 0.1, layers: 'first-half' },
  { name: 'us-tail', owner: 'demo', region: 'us-east', price: 0.15, layers: 'second-half' },
] as const;

const secretsSchema = z.object({
  accountId: z.string(),
  apiKey: z.string(),
  ownerToken: z.string(),
  edgeKeyId: z.string(),
  edgeSigningKey: z.string(),
  /** Keys the edge's unpredictable choice of jobs to re-execute (edge/checks). */
  checkSecret: z.string().optional(),
  /** Pool-owner token of the second demo owner (the independent checker's pool). */
  secondOwnerToken: z.string().optional(),
});
type Secrets = z.infer<typeof secretsSchema>;

function log(msg: string): void {
  process.stdout.write(`[start] ${msg}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '8787' }, model: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`--port must be a TCP port, got ${values.port}`);
  mkdirSync(DEV, { recursive: true });

  const children: ChildProcess[] = [];
  let edge: EdgeProcess | undefined;
  let registry: EmbeddedRegistry | undefined;
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    log('stopping...');
    for (const c of children) if (c.exitCode === null && c.pid) process.kill(c.pid, 'SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
    await edge?.stop();
    await registry?.stop();
    log('stopped; data kept in .data/ and .models/');
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  try {
    // 1. Registry
    let databaseUrl = process.env.DATABASE_URL;
    if (databaseUrl) {
      log(`registry: DATABASE_URL (${redactDatabaseUrl(databaseUrl)})`);
    } else {
      registry = await startEmbeddedRegistry({ dataDir: DATA_DIR });
      databaseUrl = registry.url;
      log(`registry: embedded PGlite in .data/registry, serving ${databaseUrl}`);
    }

    // 2. Migrations and demo credentials
    const { db, sql, close } = createDb(databaseUrl, { max: 2 });
    await migrate(sql);
    log('migrations applied');
    const secrets = await ensureSecrets(sql, db);

    // 3. The model: the demo model, or the one --model names
    const { built, modelDir } = await prepareModel(values.model);
    // The registry in .data/ outlives builder updates: the rebuilt model takes its name over.
    const published = await upsertModel(db, built.manifest, null, { takeOverName: true });
    if (published.renamed) log(`the model was rebuilt (a builder or importer update, or another checkpoint); the older one stays registered as ${published.renamed}`);
    await close();
    log(`model ${built.manifest.name} ${built.modelId.slice(0, 12)}… in ${relativeToRoot(modelDir)}`);

    // 4. Edge in workerd
    edge = await startEdgeProcess({
      port,
      stateDir: join(DEV, 'edge'),
      vars: {
        DATABASE_URL: databaseUrl,
        EDGE_SIGNING_KEY: secrets.edgeSigningKey,
        EDGE_KEY_ID: secrets.edgeKeyId,
        EDGE_LOCATION: 'local',
        ...(secrets.checkSecret ? { CHECK_SECRET: secrets.checkSecret } : {}),
      },
      onLog: (l) => process.stdout.write(`[edge] ${l}\n`),
    });
    log(`edge (workerd) on ${edge.url}`);

    // 5. Pool agents through the owner's path
    const numLayers = built.manifest.architecture.numLayers;
    const half = Math.floor(numLayers / 2);
    const agents: { id: string; url: string; pid: number; region: string; name: string }[] = [];
    for (const a of AGENTS) {
      const layers = a.layers === 'all' ? `0:${numLayers}` : a.layers === 'first-half' ? `0:${half}` : `${half}:${numLayers}`;
      const dir = join(DEV, 'agents', `${a.name}.${a.owner}`);
      if (!existsSync(join(dir, 'identity.json'))) await runCli(['init', '--dir', dir]);
      // Measured throughput is part of the registration, as a real owner's would be (once per model and span).
      const [start, end] = layers.split(':').map(Number);
      const state = await loadState(dir);
      if (!state.bench.some((b) => b.modelId === built.modelId && b.layers[0] === start && b.layers[1] === end)) {
        await runCli(['bench', '--dir', dir, '--model', modelDir, '--layers', layers, '--threads', '1']);
      }
      // The endpoint is announced before serving, so pick the port first.
      const agentPort = await freePort();
      const endpoint = `http://127.0.0.1:${agentPort}`;
      const ownerEnv = { LAYERNET_OWNER_TOKEN: a.owner === 'demo' ? secrets.ownerToken : secrets.secondOwnerToken! };
      await runCli(
        ['register', '--dir', dir, '--edge', edge.url, '--region', a.region, '--price', String(a.price), '--pool-name', `demo-${a.region}`,
          '--endpoint', endpoint, '--model', modelDir, '--layers', layers],
        ownerEnv,
      );
      const child = spawn(
        process.execPath,
        [AGENT_BIN, 'serve', '--dir', dir, '--host', '127.0.0.1', '--port', String(agentPort), '--model', modelDir, '--layers', layers, '--threads', '1'],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      children.push(child);
      const ready = await waitForReady(child, a.name);
      agents.push({ id: ready.agentId, url: ready.url, pid: child.pid!, region: a.region, name: a.name });
      log(`agent ${a.name} (${a.region}, $${a.price}/1M tokens, layers ${layers}) on ${ready.url} as ${ready.agentId}`);
    }

    // 6. Ready
    const stack = { edge: edge.url, apiKey: secrets.apiKey, ownerToken: secrets.ownerToken, databaseUrl, agents: agents.map(({ id, url, pid, region }) => ({ id, url, pid, region })) };
    writeFileSync(STACK_FILE, JSON.stringify(stack, null, 2) + '\n', { mode: 0o600 });
    await waitForRoutable(edge.url, secrets.apiKey, built.manifest.name);
    process.stdout.write(
      [
        '',
        'LayerNet local network is up.',
        `  edge:      ${edge.url}  (OpenAI-compatible: ${edge.url}/v1, docs ${edge.url}/docs)`,
        `  API key:   ${secrets.apiKey}`,
        `  owner:     ${secrets.ownerToken}`,
        `  stack:     .dev/stack.json`,
        '',
        'Try:',
        `  curl -s ${edge.url}/v1/chat/completions -H "authorization: Bearer ${secrets.apiKey}" -H "content-type: application/json" \\`,
        `    -d '{"model":"${built.manifest.name}","messages":[{"role":"user","content":"Hello"}],"max_tokens":16,"seed":1}'`,
        '',
        'Ctrl-C stops everything (data is kept).',
        '',
      ].join('\n'),
    );
    for (const c of children) {
      c.once('exit', (code) => {
        if (!stopping) log(`an agent (pid ${c.pid}) exited with code ${code}; the edge routes around it`);
      });
    }
  } catch (err) {
    console.error(`[start] failed: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll(1);
  }
}

/**
 * The model to serve: the tiny demo model (built once), a folder with a manifest (built or
 * imported: used as it is), or a Hugging Face checkpoint folder (imported into .models/<name>;
 * a repeated start finds the import and skips it).
 */
async function prepareModel(arg: string | undefined): Promise<{ built: BuiltModel; modelDir: string }> {
  if (arg === undefined) {
    const bar = createProgressBar('tiny demo model');
    const built = await buildModel({ preset: 'tiny', outDir: MODEL_DIR, onProgress: bar.update });
    bar.finish();
    return { built, modelDir: MODEL_DIR };
  }
  const dir = resolve(arg);
  if (!existsSync(dir)) throw new Error(`--model ${arg}: no such folder`);
  if (existsSync(join(dir, 'manifest.json'))) {
    const manifest = await loadManifest(dir);
    return { built: { manifest, modelId: await manifestHash(manifest), dir }, modelDir: dir };
  }
  if (!existsSync(join(dir, 'config.json'))) throw new Error(`--model ${arg}: neither manifest.json (a built or imported model) nor config.json (a Hugging Face checkpoint) is there`);
  const outDir = join(ROOT, '.models', defaultModelName(dir, 'float32'));
  const bar = createProgressBar(`importing ${arg}`);
  try {
    const built = await importModel({ dir, outDir, onProgress: bar.update });
    bar.finish();
    for (const n of built.notes) log(`note: ${n}`);
    return { built, modelDir: outDir };
  } catch (err) {
    bar.finish();
    throw err instanceof CheckpointError ? new Error(`cannot import ${arg}: ${err.message}`) : err;
  }
}

function relativeToRoot(path: string): string {
  return path.startsWith(`${ROOT}/`) ? path.slice(ROOT.length + 1) : path;
}

/** Reuses the demo credentials from an earlier start while the registry still knows them. */
async function ensureSecrets(sql: ReturnType<typeof createDb>['sql'], db: ReturnType<typeof createDb>['db']): Promise<Secrets> {
  if (existsSync(SECRETS_FILE)) {
    const parsed = secretsSchema.safeParse(JSON.parse(readFileSync(SECRETS_FILE, 'utf8')));
    if (parsed.success) {
      const s = parsed.data;
      const ok = await Promise.all([s.apiKey, s.ownerToken].map((key) => keyIsLive(sql, key)));
      if (ok.every(Boolean)) {
        log('demo account and keys reused from .dev/secrets.json');
        let changed = false;
        if (!s.checkSecret) {
          s.checkSecret = toBase64Url(randomBytes(32));
          changed = true;
        }
        if (!s.secondOwnerToken || !(await keyIsLive(sql, s.secondOwnerToken))) {
          s.secondOwnerToken = await createSecondOwner(db);
          changed = true;
        }
        if (changed) writeFileSync(SECRETS_FILE, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
        return s;
      }
    }
  }
  const account = await createAccount(db, { name: 'demo', kind: 'user' });
  const apiKey = await createApiKey(db, { accountId: account.id, scopes: ['inference'], name: 'demo inference key' });
  const owner = await createApiKey(db, { accountId: account.id, scopes: ['pool-owner'], name: 'demo pool-owner token' });
  const edgeKey = await generateSigningKey();
  const s: Secrets = {
    accountId: account.id,
    apiKey: apiKey.key,
    ownerToken: owner.key,
    edgeKeyId: `local-${edgeKey.publicKey.slice(0, 8)}`,
    edgeSigningKey: edgeKey.privateKeyPkcs8,
    checkSecret: toBase64Url(randomBytes(32)),
    secondOwnerToken: await createSecondOwner(db),
  };
  writeFileSync(SECRETS_FILE, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  log('created demo account, API key and pool-owner token');
  return s;
}

/** Whether a key is still in the registry, unrevoked (keys are shown once, so we keep them). */
async function keyIsLive(sql: ReturnType<typeof createDb>['sql'], key: string): Promise<boolean> {
  const p = parseApiKey(key);
  if (!p) return false;
  const rows = await sql<{ hash: string }[]>`select hash from api_keys where prefix = ${p.prefix} and revoked_at is null`;
  return rows[0]?.hash === (await hashApiKey(key));
}

async function createSecondOwner(db: ReturnType<typeof createDb>['db']): Promise<string> {
  const account = await createAccount(db, { name: 'demo pool owner B', kind: 'pool-owner' });
  return (await createApiKey(db, { accountId: account.id, scopes: ['pool-owner'], name: 'demo pool-owner token B' })).key;
}

function runCli(args: string[], env: Record<string, string> = {}): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [AGENT_BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('exit', (code) => (code === 0 ? resolvePromise() : reject(new Error(`pool-agent ${args[0]} exited with ${code}`))));
  });
}

/** `pool-agent serve` prints one JSON line `{"event":"listening","url":...,"agentId":...}` once serving. */
function waitForReady(child: ChildProcess, name: string): Promise<{ url: string; agentId: string }> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent ${name} did not start within 120 s`)), 120_000);
    let done = false;
    const onLine = (line: string) => {
      let ev: unknown;
      try {
        ev = JSON.parse(line);
      } catch {
        process.stdout.write(`[${name}] ${line}\n`);
        return;
      }
      const r = z.object({ event: z.literal('listening'), url: z.string(), agentId: z.string() }).safeParse(ev);
      if (r.success && !done) {
        done = true;
        clearTimeout(timer);
        resolvePromise({ url: r.data.url, agentId: r.data.agentId });
      }
      const e = ev as { level?: string; msg?: string };
      if (e.level === 'error' || e.level === 'warn') process.stdout.write(`[${name}] ${line}\n`);
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', (l) => process.stderr.write(`[${name}] ${l}\n`));
    child.once('exit', (code) => {
      if (!done) {
        clearTimeout(timer);
        reject(new Error(`agent ${name} exited with code ${code} before it was ready`));
      }
    });
  });
}

/** Waits until the edge lists the model (agents' heartbeats are in), so the printed curl works at once. */
async function waitForRoutable(edgeUrl: string, apiKey: string, modelName: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${edgeUrl}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` } });
      if (res.ok) {
        const body = (await res.json()) as { data?: { id: string; agents?: number }[] };
        if (body.data?.some((m) => m.id === modelName && (m.agents ?? 1) > 0)) return;
      }
    } catch {
      /* retry */
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  log('warning: the edge does not list the demo model yet; agents may still be joining');
}

await main();
