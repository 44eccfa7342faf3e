/**
 * The README's pool-owner steps, run exactly as written by a new user: the fenced block under
 * "Running a pool agent" is parsed from README.md (so a README change the code does not follow
 * breaks this test), its placeholders (URL, OWNER_TOKEN, HOST:PORT) become a real edge, owner
 * token and free port, and each line runs in order as a child process with a fresh HOME (the
 * default state folder ~/.layernet-agent) and no other flag. Then a chat completion through the
 * edge is routed to the agent those steps started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadState } from '../../pool-agent/config.js';
import { freePort } from '../../scripts/ports.js';
import { startNetwork, type TestNetwork } from '../support/network.js';

const REPO = resolve(import.meta.dirname, '../..');
const NPM_PREFIX = 'npm run pool-agent -- ';

/** The commands of the README's pool-owner block, comments dropped, as the README writes them. */
async function readmeSteps(): Promise<string[]> {
  const readme = await readFile(join(REPO, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Running a pool agent\n'));
  if (!section) throw new Error('README.md has no "## Running a pool agent" section');
  const block = /^```sh\n([\s\S]*?)^```/m.exec(section);
  if (!block) throw new Error('the "Running a pool agent" section has no ```sh block');
  return block[1]!
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

interface Ran {
  line: string;
  code: number | null;
  stdout: string;
  stderr: string;
}

let net: TestNetwork;
let home: string;
let serve: ChildProcess | undefined;

beforeAll(async () => {
  net = await startNetwork({ agents: [] });
  home = await mkdtemp(join(tmpdir(), 'layernet-readme-home-'));
}, 180_000);

afterAll(async () => {
  if (serve && serve.exitCode === null && serve.signalCode === null) {
    serve.kill('SIGKILL');
    await new Promise((r) => serve!.once('exit', r));
  }
  await net?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

describe("the README's pool-owner steps", () => {
  it('run as written, in order, and the agent they start answers a chat completion', async () => {
    // `npm run pool-agent --` is this script: the steps run it directly (no npm in between).
    const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['pool-agent']).toBe('node --import tsx pool-agent/main.ts');

    const steps = await readmeSteps();
    expect(steps.map((s) => s.split(/\s+/)[4])).toEqual(['init', 'hardware', 'model', 'bench', 'register', 'serve']);
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
    delete env.LAYERNET_AGENT_DIR;
    delete env.LAYERNET_OWNER_TOKEN;
    const argvOf = (line: string): string[] => {
      expect(line.startsWith(NPM_PREFIX), `a README step is not a pool-agent command: ${line}`).toBe(true);
      const args = line
        .slice(NPM_PREFIX.length)
        .split(/\s+/)
        .map((a) => (a === 'URL' ? net.edgeUrl : a === 'OWNER_TOKEN' ? net.ownerToken : a.replace('HOST:PORT', `127.0.0.1:${port}`)));
      // Any other placeholder left is a step a new user could not run as written.
      for (const a of args) expect(a, `placeholder left in: ${line}`).not.toMatch(/^[A-Z][A-Z_]{2,}$|HOST|PORT/);
      return ['--import', 'tsx', 'pool-agent/main.ts', ...args];
    };

    const ran: Ran[] = [];
    for (const line of steps.slice(0, -1)) {
      const child = spawn(process.execPath, argvOf(line), { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      ran.push({ line, code, stdout, stderr });
      expect(code, `${line}\nstdout: ${stdout}\nstderr: ${stderr}`).toBe(0);
      // Nothing a new user would have to act on: bench measured the registered span, the port is the endpoint's.
      expect(stderr, line).not.toMatch(/warning/i);
    }
    const state = join(home, '.layernet-agent');
    expect(ran[2]!.stderr).toMatch(/modelDir .* recorded in .*\.layernet-agent\/pool-agent\.json/);
    const registered = JSON.parse(ran[4]!.stdout.trim().split('\n').at(-1)!) as { agentId: string; modelId: string; listen: { port: number } };
    expect(registered).toMatchObject({ modelId: net.modelId, listen: { port } });
    expect((await loadState(state)).registration).toMatchObject({ endpoint: `http://127.0.0.1:${port}`, port });

    // serve, as written: no --port, no --model, no --layers.
    serve = spawn(process.execPath, argvOf(steps.at(-1)!), { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const serveLogs: string[] = [];
    createInterface({ input: serve.stderr! }).on('line', (l) => void serveLogs.push(l));
    const listening = await new Promise<{ port: number; agentId: string; layers: number[] }>((resolveListening, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not listen within 30 s: ${serveLogs.slice(-5).join('\n')}`)), 30_000);
      createInterface({ input: serve!.stdout! }).on('line', (l) => {
        let msg: { event?: string; port: number; agentId: string; layers: number[] };
        try {
          msg = JSON.parse(l);
        } catch {
          return void serveLogs.push(l);
        }
        if (msg.event === 'listening') {
          clearTimeout(timer);
          resolveListening(msg);
        }
      });
      serve!.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${serveLogs.slice(-5).join('\n')}`)));
    });
    expect(listening).toMatchObject({ port, agentId: registered.agentId, layers: [0, net.numLayers] });
    expect(serveLogs.filter((l) => /"level":"(warn|error)"/.test(l))).toEqual([]);

    await net.waitForAgents(1);
    const res = await fetch(`${net.edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: net.modelName, messages: [{ role: 'user', content: 'Hello from the README' }], max_tokens: 4, temperature: 0 }),
    });
    const body = (await res.json()) as { usage?: { completion_tokens: number }; route?: { hops: { agent_id: string }[] } };
    expect(res.status, `${JSON.stringify(body)}\nedge: ${net.edgeLogs.slice(-15).join('\n')}`).toBe(200);
    expect(body.usage!.completion_tokens).toBeGreaterThan(0);
    expect(body.route!.hops.map((h) => h.agent_id)).toEqual([registered.agentId]);
    // The agent itself counts the job it ran as head.
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const jobs = [...metrics.matchAll(/^layernet_agent_jobs_total(?:\{[^}]*\})? (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    expect(jobs).toBeGreaterThan(0);

    serve.kill('SIGTERM');
    expect(await new Promise((r) => serve!.once('exit', (code) => r(code)))).toBe(0);
  }, 120_000);
});
