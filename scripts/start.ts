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
 * 4. The edge in workerd through `wrangler dev` on 127.0.0.1:PORT, with its scheduled trust tick
 *    (the Cron Trigger's work) run every minute through wrangler's `/__scheduled` route.
 * 5. Three pool agents in two regions at different prices, each joining through the same
 *    `pool-agent init / register / serve` path a real pool owner uses.
 * 6. `.dev/stack.json` and a ready-to-paste curl line.
 *
 * It owns what it starts. Before it touches the registry or `.dev/`, it takes `.dev/start.lock`
 * (scripts/start-lock.ts: a second start on the same folders is refused, naming the first one's
 * pid; a lock left by a start that was killed is taken over) and checks that the edge port is
 * free (else it is refused, naming the port and, on Linux, the process holding it). Each child
 * runs in a process group of its own (scripts/owned-processes.ts): Ctrl-C, SIGTERM and SIGHUP
 * stop every group (SIGKILL after a grace period), also when a child already died, and a reaper
 * process (scripts/reaper.ts) stops them within seconds when start.ts itself is killed outright.
 * The data is kept.
 *
 * The state lives in the repository (`.data/`, `.dev/`, `.models/`), or under `$LAYERNET_HOME`
 * when set (a second network beside the first, or a test's own copy).
 */
import type { ChildProcess } from 'node:child_process';
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
import { startProcessOwner, type ProcessOwner } from './owned-processes.js';
import { describePortHolders, freePort, portUnavailable } from './ports.js';
import { acquireStartLock } from './start-lock.js';

const ROOT = resolve(import.meta.dirname, '..');
/** Where the state folders live: the repository, or $LAYERNET_HOME. */
const HOME = process.env.LAYERNET_HOME ? resolve(process.env.LAYERNET_HOME) : ROOT;
const DEV = join(HOME, '.dev');
const STACK_FILE = join(DEV, 'stack.json');
const SECRETS_FILE = join(DEV, 'secrets.json');
const LOCK_FILE = join(DEV, 'start.lock');
const MODELS_DIR = join(HOME, '.models');
const MODEL_DIR = join(MODELS_DIR, 'tiny');
const DATA_DIR = join(HOME, '.data', 'registry');
const AGENT_BIN = join(ROOT, 'pool-agent', 'bin.mjs');
/** How long children get to stop after SIGTERM before SIGKILL (an agent finishes its running jobs). */
const STOP_GRACE_MS = 10_000;

const USAGE = `usage: npm start [-- --port 8787] [--model DIR]

Starts the local network: registry, edge (workerd), three pool agents, the tiny demo model.
  --port N      edge port on 127.0.0.1 (default 8787)
  --model DIR   serve this model instead: a Hugging Face checkpoint folder (imported once into
                .models/<its name>, float32) or a folder from pool-agent model build/import
  --help        this text

State: .data/, .dev/ and .models/ in the repository, or in $LAYERNET_HOME when set. One start
at a time per state folder (.dev/start.lock); Ctrl-C, SIGTERM or SIGHUP stops everything.`;

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
  // A closed terminal (SIGHUP) or a closed pipe must not crash start.ts before it stopped its children.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  mkdirSync(DEV, { recursive: true });

  // Before anything touches the registry, .dev/agents or .dev/stack.json: one start per state folder...
  const lock = acquireStartLock(LOCK_FILE, { port });
  if (!lock.ok) {
    const h = lock.holder;
    refuse(
      `another npm start (pid ${h.pid}${h.port ? `, edge on port ${h.port}` : ''}${h.startedAt ? `, since ${h.startedAt}` : ''}) is running on ${relativeToRoot(DEV)}` +
        ` (lock ${relativeToRoot(LOCK_FILE)}${lock.command ? `; pid ${h.pid} is: ${lock.command}` : ''}).\n` +
        `Stop it first (Ctrl-C where it runs, or kill ${h.pid}), or give this one its own state folder: LAYERNET_HOME=DIR npm start -- --port N`,
    );
  }
  if (lock.tookOverFrom) log(`took over ${relativeToRoot(LOCK_FILE)} from pid ${lock.tookOverFrom.pid}, which is no longer running`);
  // ...and an edge port no one else holds (wrangler would only log `Address already in use`).
  const portProblem = await portUnavailable(port);
  if (portProblem) {
    lock.release();
    refuse(
      portProblem === 'EADDRINUSE'
        ? `port ${port} on 127.0.0.1 is already in use, by ${describePortHolders(port)}.\nStop that process, or start the edge on another port: npm start -- --port N`
        : `cannot listen on 127.0.0.1:${port} (${portProblem}); pick another port: npm start -- --port N`,
    );
  }

  const owner: ProcessOwner = startProcessOwner();
  let edge: EdgeProcess | undefined;
  let registry: EmbeddedRegistry | undefined;
  let stopping = false;
  let stoppingSince = 0;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    stoppingSince = Date.now();
    log('stopping...');
    try {
      const { killed, left } = await owner.stopAll(STOP_GRACE_MS);
      if (killed.length) log(`killed (SIGKILL) after ${STOP_GRACE_MS / 1000} s without stopping: ${killed.join(', ')}`);
      if (left.length) {
        console.error(`[start] still running after SIGKILL: ${left.join(', ')}`);
        code ||= 1;
      }
      await edge?.stop();
      await registry?.stop();
    } catch (err) {
      console.error(`[start] while stopping: ${err instanceof Error ? err.message : String(err)}`);
      code ||= 1;
    }
    owner.release();
    lock.release();
    log(`stopped; data kept in ${relativeToRoot(join(HOME, '.data'))}/ and ${relativeToRoot(MODELS_DIR)}/`);
    process.exit(code);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (!stopping) return void stopAll(0);
      // One Ctrl-C under `npm start` arrives twice (from the terminal, and forwarded by npm):
      // only a second press, later, means "now".
      if (Date.now() - stoppingSince < 2000) return;
      log(`${sig} again: killing what is left`);
      owner.killAll();
    });
  }

  try {
    // 1. Registry
    let databaseUrl = process.env.DATABASE_URL;
    if (databaseUrl) {
      log(`registry: DATABASE_URL (${redactDatabaseUrl(databaseUrl)})`);
    } else {
      registry = await startEmbeddedRegistry({ dataDir: DATA_DIR });
      databaseUrl = registry.url;
      log(`registry: embedded PGlite in ${relativeToRoot(DATA_DIR)}, serving ${databaseUrl}`);
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
      onSpawn: (child) => owner.adopt('edge', child),
      // The Worker's Cron Trigger, locally: the trust tick (stale disputes, route blocks, third-check retries).
      tickEveryMs: 60_000,
    });
    log(`edge (workerd) on ${edge.url}`);
    edge.child.once('exit', (code, sig) => {
      if (stopping) return;
      log(`the edge (wrangler, pid ${edge?.pid}) exited (${sig ?? `code ${code}`}); stopping the network`);
      void stopAll(1);
    });

    // 5. Pool agents through the owner's path
    const numLayers = built.manifest.architecture.numLayers;
    const half = Math.floor(numLayers / 2);
    const agents: { id: string; url: string; pid: number; region: string; name: string }[] = [];
    const agentChildren: ChildProcess[] = [];
    for (const a of AGENTS) {
      const layers = a.layers === 'all' ? `0:${numLayers}` : a.layers === 'first-half' ? `0:${half}` : `${half}:${numLayers}`;
      const dir = join(DEV, 'agents', `${a.name}.${a.owner}`);
      if (!existsSync(join(dir, 'identity.json'))) await runCli(owner, ['init', '--dir', dir]);
      // Measured throughput is part of the registration, as a real owner's would be (once per model and span).
      const [start, end] = layers.split(':').map(Number);
      const state = await loadState(dir);
      if (!state.bench.some((b) => b.modelId === built.modelId && b.layers[0] === start && b.layers[1] === end)) {
        await runCli(owner, ['bench', '--dir', dir, '--model', modelDir, '--layers', layers, '--threads', '1']);
      }
      // The endpoint is announced before serving, so pick the port first.
      const agentPort = await freePort();
      const endpoint = `http://127.0.0.1:${agentPort}`;
      const ownerEnv = { LAYERNET_OWNER_TOKEN: a.owner === 'demo' ? secrets.ownerToken : secrets.secondOwnerToken! };
      await runCli(
        owner,
        ['register', '--dir', dir, '--edge', edge.url, '--region', a.region, '--price', String(a.price), '--pool-name', `demo-${a.region}`,
          '--endpoint', endpoint, '--model', modelDir, '--layers', layers],
        ownerEnv,
      );
      const child = owner.spawn(
        `agent ${a.name}`,
        process.execPath,
        [AGENT_BIN, 'serve', '--dir', dir, '--host', '127.0.0.1', '--port', String(agentPort), '--model', modelDir, '--layers', layers, '--threads', '1'],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      agentChildren.push(child);
      const ready = await waitForReady(child, a.name);
      agents.push({ id: ready.agentId, url: ready.url, pid: child.pid!, region: a.region, name: a.name });
      log(`agent ${a.name} (${a.region}, $${a.price}/1M tokens, layers ${layers}) on ${ready.url} as ${ready.agentId}`);
    }

    // 6. Ready
    const stack = { edge: edge.url, apiKey: secrets.apiKey, ownerToken: secrets.ownerToken, databaseUrl, agents: agents.map(({ id, url, pid, region }) => ({ id, url, pid, region })) };
    if (stopping) return;
    writeFileSync(STACK_FILE, JSON.stringify(stack, null, 2) + '\n', { mode: 0o600 });
    await waitForRoutable(edge.url, secrets.apiKey, built.manifest.name);
    process.stdout.write(
      [
        '',
        'LayerNet local network is up.',
        `  edge:      ${edge.url}  (OpenAI-compatible: ${edge.url}/v1, docs ${edge.url}/docs)`,
        `  API key:   ${secrets.apiKey}`,
        `  owner:     ${secrets.ownerToken}`,
        `  stack:     ${relativeToRoot(STACK_FILE)}`,
        '',
        'Try:',
        `  curl -s ${edge.url}/v1/chat/completions -H "authorization: Bearer ${secrets.apiKey}" -H "content-type: application/json" \\`,
        `    -d '{"model":"${built.manifest.name}","messages":[{"role":"user","content":"Hello"}],"max_tokens":16,"seed":1}'`,
        '',
        'Ctrl-C (or SIGTERM, SIGHUP) stops everything (data is kept).',
        '',
      ].join('\n'),
    );
    for (const c of agentChildren) {
      c.once('exit', (code, sig) => {
        if (!stopping) log(`an agent (pid ${c.pid}) exited (${sig ?? `code ${code}`}); the edge routes around it`);
      });
    }
  } catch (err) {
    // A failure caused by stopping (a child stopped mid-start) is no news.
    if (!stopping) console.error(`[start] failed: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll(1);
  }
}

/** Says why this start will not run, and exits before anything was started or touched. */
function refuse(why: string): never {
  console.error(`[start] refused: ${why}`);
  process.exit(1);
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
  const outDir = join(MODELS_DIR, defaultModelName(dir, 'float32'));
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

function runCli(owner: ProcessOwner, args: string[], env: Record<string, string> = {}): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = owner.spawn(`pool-agent ${args[0]}`, process.execPath, [AGENT_BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code, sig) => (code === 0 ? resolvePromise() : reject(new Error(`pool-agent ${args[0]} exited with ${sig ?? code}`))));
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
