/**
 * What an imported model's own tokenizer costs the edge in workerd: the first chat request on a
 * model loads its tokenizer files from the registry, hashes them and builds the tokenizer (kept
 * per isolate); later requests reuse it. Qwen3 (11 MB tokenizer.json) and Llama 3 (9 MB) against
 * models of the built-in kind, in a real `wrangler dev` and a real embedded registry, no agents.
 *
 *   npm run bench:edge-tokenizer -- [--rounds 3] [--requests 5]     (BENCH_DEBUG=1: wrangler's output too)
 *
 * With no agent every chat request ends in 503 no_route after tokenizing (edge/models.ts runs
 * before routing), so a latency is auth + model lookup + tokenizer + encode + routing, and the
 * models differ only in their tokenizer. Memory: VmRSS of workerd (the whole process: runtime,
 * allocator slack), an upper bound on the Worker isolate; and the isolate's own V8 heap, read
 * through the inspector (Runtime.getHeapUsage), which is what the 128 MB limit is about.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { createDb } from '../db/client.js';
import { startEmbeddedRegistry, type EmbeddedRegistry } from '../db/embedded.js';
import { migrate } from '../db/migrate.js';
import { modelFileStore } from '../db/model-files-store.js';
import { createAccount, createApiKey, upsertModel } from '../db/seed.js';
import { sha256Hex } from '../protocol/bytes.js';
import { createHfTokenizer } from '../protocol/hf-tokenizer.js';
import { generateSigningKey } from '../protocol/keys.js';
import { startEdgeProcess, type EdgeProcess } from '../scripts/edge-process.js';
import { freePort } from '../scripts/ports.js';
import { testManifest } from '../test/unit/edge-fixtures.js';
import { hfModel } from '../test/unit/hf-model-fixtures.js';

// Node 20 has WebSocket (for the inspector) only behind a flag: rerun this file with it.
if (typeof WebSocket === 'undefined') {
  const r = spawnSync(process.execPath, ['--experimental-websocket', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
if (process.platform !== 'linux') throw new Error('bench:edge-tokenizer reads workerd\'s memory from /proc (Linux only)');

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, requests: { type: 'string', default: '5' } } });
const ROUNDS = Number(values.rounds);
const N = Number(values.requests);
const MiB = 1 << 20;
const HF = ['qwen3', 'llama3'] as const;
type Hf = (typeof HF)[number];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const f1 = (x: number) => x.toFixed(1);
const delta = (x: number) => `${x >= 0 ? '+' : '−'}${f1(Math.abs(x))}`;

/**
 * workerd processes in wrangler's process group (startEdgeProcess spawns wrangler detached, so its
 * pid is the group's id). wrangler runs two: its proxy on the public port, and the runtime of the
 * Worker itself, the one started with an inspector.
 */
function workerds(leader: number): { worker: number | undefined; proxy: number | undefined } {
  const found: { pid: number; cmd: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // comm sits in parentheses and may hold spaces: the fields after it start at the last ')'.
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (pgrp === leader && (comm === 'workerd' || cmd.split(' ')[0]!.endsWith('/workerd'))) found.push({ pid: Number(name), cmd });
    } catch {
      /* the process ended while we looked */
    }
  }
  const worker = found.find((p) => p.cmd.includes('--inspector-addr')) ?? (found.length === 1 ? found[0] : undefined);
  return { worker: worker?.pid, proxy: found.find((p) => p !== worker)?.pid };
}

/** VmRSS and its high-water mark VmHWM, MiB. */
function rss(pid: number): { now: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)![1]) / 1024;
  return { now: kb('VmRSS'), peak: kb('VmHWM') };
}

/**
 * The Worker isolate's V8 heap (MiB) through wrangler's inspector proxy (it wants an Origin
 * header): as it stands, then after a full GC, which the isolate runs when a request next enters
 * it, so `/healthz` is sent alongside.
 */
async function heapReader(inspectorPort: number, edgeUrl: string) {
  const [target] = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as { webSocketDebuggerUrl: string }[];
  const ws = new WebSocket(target!.webSocketDebuggerUrl, { headers: { origin: 'http://127.0.0.1' } } as unknown as string[]);
  await new Promise((ok, fail) => ((ws.onopen = ok), (ws.onerror = fail)));
  type Usage = { usedSize: number; totalSize: number };
  const waiting = new Map<number, (r: Usage) => void>();
  ws.onmessage = (e) => {
    const m = JSON.parse(String(e.data)) as { id?: number; result?: Usage };
    if (m.id !== undefined) waiting.get(m.id)?.(m.result!);
  };
  let id = 1e6; // clear of the ids the proxy's own session uses
  const call = (method: string) =>
    new Promise<Usage>((ok, fail) => {
      // A reloaded Worker drops the session: fail rather than wait forever.
      const timer = setTimeout(() => fail(new Error(`the inspector did not answer ${method}`)), 10_000);
      waiting.set(++id, (r) => (clearTimeout(timer), ok(r)));
      ws.send(JSON.stringify({ id, method }));
    });
  const mib = (u: Usage) => ({ used: u.usedSize / MiB, total: u.totalSize / MiB });
  return {
    async heap() {
      const before = mib(await call('Runtime.getHeapUsage'));
      let collected = false;
      const gc = call('HeapProfiler.collectGarbage').finally(() => (collected = true));
      // A request may reach the isolate before the inspector's message does: nudge until it ran.
      while (!collected) await Promise.race([gc, fetch(`${edgeUrl}/healthz`).then((r) => r.arrayBuffer()).then(() => sleep(50))]);
      await gc;
      return { before, after: mib(await call('Runtime.getHeapUsage')) };
    },
    close: () => ws.close(),
  };
}

const dir = await mkdtemp(join(tmpdir(), 'layernet-bench-tokenizer-'));
let registry: EmbeddedRegistry | undefined;
let edge: EdgeProcess | undefined;
const stopAll = async () => {
  await edge?.stop().catch(() => undefined);
  await registry?.stop().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void stopAll().then(() => process.exit(130)));
try {
  registry = await startEmbeddedRegistry({ dataDir: join(dir, 'registry') });
  const { db, sql, close } = createDb(registry.url, { max: 2 });
  await migrate(sql);
  const account = await createAccount(db, { name: 'bench', kind: 'user' });
  const apiKey = (await createApiKey(db, { accountId: account.id, scopes: ['inference'], name: 'bench inference' })).key;
  const ownerKey = (await createApiKey(db, { accountId: account.id, scopes: ['pool-owner'], name: 'bench owner' })).key;
  // Two built-in models: one to warm up and time, one whose first request is cold in the same
  // caches (model lookup, candidates) but builds no tokenizer.
  for (const name of ['builtin-test', 'builtin-cold']) await upsertModel(db, testManifest(4, name, 8192));
  const hf = { qwen3: await hfModel('qwen3'), llama3: await hfModel('llama3') };
  const ids = { qwen3: (await upsertModel(db, hf.qwen3.manifest)).id, llama3: (await upsertModel(db, hf.llama3.manifest)).id };
  const edgeKey = await generateSigningKey();
  const startEdge = async (round: number, inspectorPort?: number) =>
    startEdgeProcess({
      port: await freePort(),
      ...(inspectorPort ? { inspectorPort } : {}),
      stateDir: join(dir, `edge-${round}`),
      onLog: (l) => process.env.BENCH_DEBUG && console.error('[edge]', l),
      vars: { DATABASE_URL: registry!.url, EDGE_SIGNING_KEY: edgeKey.privateKeyPkcs8, EDGE_KEY_ID: 'edge-bench', EDGE_LOCATION: 'bench' },
    });

  // Uploads go through an edge of their own, so no measured isolate ever held the uploaded bodies.
  edge = await startEdge(0);
  for (const which of HF) {
    for (const f of hf[which].files) {
      // wrangler restarts the Worker when a watched source file changes (others edit the tree): retry then.
      for (let attempt = 1; ; attempt++) {
        const res = await fetch(`${edge.url}/v1/owner/models/${ids[which]}/files/${f.path}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${ownerKey}`, 'content-type': 'application/octet-stream' },
          body: new Uint8Array(f.content), // a copy over a plain ArrayBuffer, which fetch's types ask for
        });
        const text = await res.text();
        if (res.status === 201 || res.status === 200) break; // 200: an interrupted try had stored it
        if (attempt === 5 || !/restarted/.test(text)) throw new Error(`upload of ${which} ${f.path}: ${res.status} ${text}`);
      }
    }
  }
  await edge.stop();
  edge = undefined;
  for (const which of HF) console.log(`${which}: ${hf[which].files.map((f) => `${f.path} ${(f.bytes / 1e6).toFixed(2)} MB`).join(', ')}, uploaded through the edge`);

  // The steps of the edge's first request, timed in Node, to say where its time goes.
  const files = modelFileStore(db);
  const timed = async (f: () => unknown) => {
    const t = performance.now();
    await f();
    return f1(performance.now() - t);
  };
  for (const which of HF) {
    const got: Record<string, Uint8Array> = {};
    const read = await timed(async () => {
      for (const f of hf[which].files) got[f.path] = (await files.getModelFile(ids[which], f.path))!;
    });
    const hash = await timed(() => Promise.all(Object.values(got).map(sha256Hex)));
    const text = (path: string) => new TextDecoder().decode(got[path]);
    const build = await timed(() => createHfTokenizer({ tokenizerJson: text('tokenizer.json'), tokenizerConfig: text('tokenizer_config.json') }));
    console.log(`${which} in Node: registry read ${read} ms, SHA-256 ${hash} ms, decode + build ${build} ms`);
  }
  await close();

  /** One chat request; its latency (ms). It must end in no_route for want of agents, not of a tokenizer. */
  const chat = async (url: string, model: string): Promise<number> => {
    const t = performance.now();
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'How much does a tokenizer cost the edge?' }], max_tokens: 16 }),
    });
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    const ms = performance.now() - t;
    if (res.status !== 503 || body.error?.code !== 'no_route' || /tokenizer/i.test(body.error.message ?? '')) {
      throw new Error(`${model}: expected 503 no_route for want of agents, got ${res.status} ${JSON.stringify(body)}`);
    }
    return ms;
  };

  /** RSS and peak of the Worker's workerd, the proxy's RSS; the isolate's heap as served, and live (after a full GC). */
  type Mem = { rss: number; peak: number; proxyRss: number; heapUsed: number; heapTotal: number; liveUsed: number };
  interface Round { baseline: number; builtinCold: number; start: Mem; models: Record<Hf, { cold: number; warm: number; mem: Mem }> }
  /** One fresh edge's figures; null when wrangler reloaded the Worker meanwhile (it watches the source tree). */
  const measure = async (round: number): Promise<{ r: Round; pids: ReturnType<typeof workerds> } | null> => {
    const inspectorPort = await freePort();
    edge = await startEdge(round, inspectorPort);
    const pids = workerds(edge.pid);
    if (!pids.worker) throw new Error(`no workerd with an inspector in wrangler's process group ${edge.pid}`);
    const inspector = await heapReader(inspectorPort, edge.url);
    const mem = async (): Promise<Mem> => {
      const h = await inspector.heap();
      const w = rss(pids.worker!);
      return { rss: w.now, peak: w.peak, proxyRss: pids.proxy ? rss(pids.proxy).now : NaN, heapUsed: h.before.used, heapTotal: h.before.total, liveUsed: h.after.used };
    };
    try {
      for (let i = 0; i < 5; i++) await chat(edge.url, 'builtin-test');
      const start = await mem();
      const base: number[] = [];
      for (let i = 0; i < N; i++) base.push(await chat(edge.url, 'builtin-test'));
      const builtinCold = await chat(edge.url, 'builtin-cold');
      const models = {} as Round['models'];
      for (const which of HF) {
        const cold = await chat(edge.url, hf[which].manifest.name);
        const warm: number[] = [];
        for (let i = 0; i < N; i++) warm.push(await chat(edge.url, hf[which].manifest.name));
        models[which] = { cold, warm: median(warm), mem: await mem() };
      }
      return workerds(edge.pid).worker === pids.worker ? { r: { baseline: median(base), builtinCold, start, models }, pids } : null;
    } catch (err) {
      // A reload mid-round shows as a 503 or a vanished process: the round is void, not the bench.
      if (workerds(edge.pid).worker !== pids.worker) return null;
      throw err;
    } finally {
      inspector.close();
      await edge.stop();
      edge = undefined;
    }
  };

  const rounds: Round[] = [];
  for (let round = 1, tries = 0; round <= ROUNDS; ) {
    const got = await measure(round);
    if (!got) {
      if (++tries > 5) throw new Error('wrangler kept reloading the Worker (files under edge/ changing?)');
      console.log(`\nround ${round}: wrangler reloaded the Worker during the round (a source file changed); repeating it`);
      continue;
    }
    const { r, pids } = got;
    rounds.push(r);
    const heap = (m: Mem) => `RSS ${f1(m.rss)} MiB (peak ${f1(m.peak)}, proxy ${f1(m.proxyRss)}), isolate heap ${f1(m.heapUsed)} / ${f1(m.heapTotal)} MiB, live after GC ${f1(m.liveUsed)} MiB`;
    console.log(`\nround ${round++}: workerd pids: the Worker's ${pids.worker}, wrangler's proxy ${pids.proxy ?? '(none)'}`);
    console.log(`  built-in: median ${f1(r.baseline)} ms, first request on a second built-in model ${f1(r.builtinCold)} ms; ${heap(r.start)}`);
    for (const which of HF) {
      const { cold, warm, mem } = r.models[which];
      console.log(`  ${which}: first request ${f1(cold)} ms, then median ${f1(warm)} ms; ${heap(mem)}`);
    }
  }

  const med = (f: (r: Round) => number) => f1(median(rounds.map(f)));
  console.log(`\nmedians over ${ROUNDS} fresh edges (warm figures: median of ${N} requests each; timed in Node over loopback)`);
  console.log(`built-in tokenizer: warm ${med((r) => r.baseline)} ms; first request on another built-in model ${med((r) => r.builtinCold)} ms\n`);
  console.log('| model | first request | warm median | first − warm | first − first on a built-in model |');
  console.log('|---|---|---|---|---|');
  for (const which of HF) {
    const m = (r: Round) => r.models[which];
    console.log(`| ${which} | ${med((r) => m(r).cold)} ms | ${med((r) => m(r).warm)} ms | ${med((r) => m(r).cold - m(r).warm)} ms | ${med((r) => m(r).cold - r.builtinCold)} ms |`);
  }
  console.log("\n| after | the Worker's workerd: RSS | its peak (VmHWM) | isolate heap used / total, as served | isolate heap live after a full GC | proxy workerd RSS |");
  console.log('|---|---|---|---|---|---|');
  const row = (label: string, f: (r: Round) => Mem, g?: (r: Round) => Mem) => {
    const d = (k: keyof Mem) => (g ? ` (${delta(median(rounds.map((r) => f(r)[k] - g(r)[k])))})` : '');
    const mib = (k: keyof Mem) => `${med((r) => f(r)[k])} MiB`;
    console.log(`| ${label} | ${mib('rss')}${d('rss')} | ${mib('peak')} | ${med((r) => f(r).heapUsed)} / ${mib('heapTotal')} | ${mib('liveUsed')}${d('liveUsed')} | ${mib('proxyRss')} |`);
  };
  row('warm-up (built-in)', (r) => r.start);
  row('+ qwen3', (r) => r.models.qwen3.mem, (r) => r.start);
  row('+ llama3 (both cached)', (r) => r.models.llama3.mem, (r) => r.models.qwen3.mem);
  const last = (k: keyof Mem) => median(rounds.map((r) => r.models.llama3.mem[k]));
  const [live, served, total] = [last('liveUsed'), last('heapTotal'), last('rss')];
  console.log(
    `\nWorkers' limit is 128 MB per isolate. Both tokenizers cached, ${f1(live)} MiB of the isolate's heap is live after a full GC ` +
      `(${live < 64 ? 'well below' : live < 128 ? 'below, but not well below' : 'OVER'} the limit); the heap had grown to ${f1(served)} MiB ` +
      `while serving. workerd's RSS is ${f1(total)} MiB (${total < 64 ? 'well below' : total < 128 ? 'below' : 'above'} 128 MB), but RSS is ` +
      'the whole workerd process (runtime, allocator, memory freed but not returned): an upper bound on the isolate, not its heap.',
  );
} finally {
  await stopAll();
}
