/**
 * Test support for agents: an edge signer that issues tickets, a chain of in-process agent
 * servers over loopback, a reader for NDJSON job streams, and `startAgent`, which runs a real
 * `pool-agent serve` child process.
 *
 * @example
 * const edge = await createTestEdge();
 * const chain = await startChain({ edge, spans: [spanA, spanB] });
 * const { signed } = await edge.ticket({ route: chain.route, modelId, promptIds: [1, 5, 9], maxTokens: 8 });
 * const events = await runJob(chain.url, { signedTicket: signed, promptIds: [1, 5, 9], prefixIds: [] });
 * await chain.close();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { jobEventSchema, type JobEvent, type JobRequest } from '../../protocol/agent-api.js';
import { encodeTokenIds, randomBytes, sha256Hex, toBase64Url } from '../../protocol/bytes.js';
import { generateSigningKey, type SigningKey } from '../../protocol/keys.js';
import { signTicket, ticketHash, type JobTicket, type RouteHop, type SamplingParams, type SignedTicket } from '../../protocol/ticket.js';
import type { LoadedSpan } from '../../pool-agent/runtime/types.js';
import { startAgentServer, type AgentServer, type AgentServerOptions } from '../../pool-agent/server/app.js';
import { saveConfig, saveState } from '../../pool-agent/config.js';
import { createIdentity } from '../../pool-agent/identity.js';

export const GREEDY: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: 1 };

export interface TicketRequest {
  route: RouteHop[];
  modelId: string;
  promptIds: number[];
  prefixIds?: number[];
  maxTokens: number;
  sampling?: SamplingParams;
  stopTokenIds?: number[];
  jobId?: string;
  dtype?: 'float32' | 'float16';
  ttlMs?: number;
  deadlineMs?: number;
  /** Override fields after building (tests of refusals). */
  patch?: Partial<JobTicket>;
}

export interface TestEdge {
  keyId: string;
  key: SigningKey;
  /** `edgeKeys` for agent options. */
  keys: Record<string, string>;
  ticket(req: TicketRequest): Promise<{ signed: SignedTicket; hash: string }>;
}

export async function createTestEdge(keyId = 'edge-test-1'): Promise<TestEdge> {
  const key = await generateSigningKey();
  return {
    keyId,
    key,
    keys: { [keyId]: key.publicKey },
    async ticket(req) {
      const now = Date.now();
      const prefix = req.prefixIds ?? [];
      const ticket: JobTicket = {
        v: 1,
        jobId: req.jobId ?? `job-${toBase64Url(randomBytes(6))}`,
        modelId: req.modelId,
        dtype: req.dtype ?? 'float32',
        route: req.route,
        inputHash: await sha256Hex(encodeTokenIds([...req.promptIds, ...prefix])),
        promptTokens: req.promptIds.length,
        prefixTokens: prefix.length,
        limits: { maxTokens: req.maxTokens, deadline: now + (req.deadlineMs ?? 120_000) },
        sampling: req.sampling ?? GREEDY,
        stopTokenIds: req.stopTokenIds ?? [],
        nonce: toBase64Url(randomBytes(18)),
        issuedAt: now,
        expiresAt: now + (req.ttlMs ?? 60_000),
        edgeKeyId: keyId,
        ...req.patch,
      };
      const signed = await signTicket(key.privateKey, ticket);
      return { signed, hash: await ticketHash(ticket) };
    },
  };
}

export interface InProcessChain {
  agents: AgentServer[];
  /** Route of the chain, in order, with each agent's endpoint. */
  route: RouteHop[];
  /** Agents' public keys by agent id (for ChainVerifier). */
  publicKeys: Record<string, string>;
  /** URL of the head agent. */
  url: string;
  close(): Promise<void>;
}

export interface StartChainOptions {
  edge: TestEdge;
  spans: LoadedSpan[];
  agentIdPrefix?: string;
  /** Per-agent extra options (limits, clock, fetch...). */
  agentOptions?: (index: number) => Partial<AgentServerOptions>;
}

/** One in-process agent server per span, on 127.0.0.1 port 0. */
export async function startChain(opts: StartChainOptions): Promise<InProcessChain> {
  const agents: AgentServer[] = [];
  const publicKeys: Record<string, string> = {};
  try {
    for (let i = 0; i < opts.spans.length; i++) {
      const agentId = `${opts.agentIdPrefix ?? 'agent'}-${i}`;
      const signingKey = await generateSigningKey();
      publicKeys[agentId] = signingKey.publicKey;
      agents.push(await startAgentServer({ agentId, signingKey, edgeKeys: opts.edge.keys, span: opts.spans[i]!, ...opts.agentOptions?.(i) }));
    }
  } catch (err) {
    await Promise.all(agents.map((a) => a.close()));
    throw err;
  }
  const route = agents.map((a, i) => ({ agentId: a.core.agentId, layers: [opts.spans[i]!.layers[0], opts.spans[i]!.layers[1]] as [number, number], endpoint: a.url, publicKey: publicKeys[a.core.agentId] }));
  return { agents, route, publicKeys, url: agents[0]!.url, close: async () => void (await Promise.all(agents.map((a) => a.close()))) };
}

export interface JobResponse {
  status: number;
  headers: Headers;
  events: JobEvent[];
  /** Error envelope when status is not 200. */
  error?: { message: string; code: string };
}

/** POSTs a job and reads the whole NDJSON stream, validating every line. */
export async function runJob(url: string, body: JobRequest | unknown, signal?: AbortSignal): Promise<JobResponse> {
  const res = await fetch(new URL('/v1/jobs', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...(signal ? { signal } : {}) });
  if (res.status !== 200) {
    const env = (await res.json()) as { error: { message: string; code: string } };
    return { status: res.status, headers: res.headers, events: [], error: env.error };
  }
  const text = await res.text();
  const events = text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => jobEventSchema.parse(JSON.parse(l)));
  return { status: res.status, headers: res.headers, events };
}

/** Tokens of the chunk events, in order. */
export function tokensOf(events: readonly JobEvent[]): number[] {
  return events.flatMap((e) => (e.type === 'chunk' ? e.tokenIds : []));
}

export interface ChildAgent {
  url: string;
  pid: number;
  agentId: string;
  publicKey: string;
  dir: string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  /** Lines the agent wrote to stderr (JSON logs). */
  logs: string[];
}

export interface StartAgentOptions {
  modelDir: string;
  layers: readonly [number, number];
  edgeKeys: Record<string, string>;
  agentId: string;
  /** State folder (a fresh temp dir when absent; removed on stop). */
  dir?: string;
  threads?: number;
  extraArgs?: string[];
  /** Node flags placed before the script (e.g. --cpu-prof). */
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
}

const REPO = resolve(import.meta.dirname, '../..');

/**
 * Waits for a `pool-agent serve` child's `{"event":"listening","url"}` stdout line and resolves
 * its URL; collects stderr (JSON logs) and non-JSON stdout into `logs` (bounded). Rejects, with
 * the last log lines, if the child exits first or does not listen within `timeoutMs` (then it is
 * killed).
 */
export function waitListening(child: ChildProcess, logs: string[], name: string, timeoutMs = 60_000): Promise<string> {
  const keep = (l: string) => void (logs.length < 2000 && logs.push(l));
  createInterface({ input: child.stderr! }).on('line', keep);
  return new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`agent ${name} did not listen within ${timeoutMs} ms: ${logs.slice(-5).join('\n')}`));
    }, timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const msg = JSON.parse(line) as { event?: string; url?: string };
        if (msg.event === 'listening' && msg.url) {
          clearTimeout(timer);
          resolveUrl(msg.url);
        }
      } catch {
        keep(line);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent ${name} exited with ${code} before listening: ${logs.slice(-5).join('\n')}`));
    });
  });
}

/** Runs `pool-agent serve` as a child process on port 0 and waits for its "listening" JSON line. */
export async function startAgent(opts: StartAgentOptions): Promise<ChildAgent> {
  const ownDir = !opts.dir;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'layernet-agent-')));
  const key = await createIdentity(dir, { force: true });
  await saveConfig(dir, { edgeKeys: opts.edgeKeys, logLevel: 'warn' });
  await saveState(dir, { agentId: opts.agentId, edgeKeys: {}, bench: [] });
  const args = [...(opts.nodeArgs ?? []), '--import', 'tsx', join(REPO, 'pool-agent/main.ts'), 'serve', '--dir', dir, '--model', opts.modelDir, '--layers', `${opts.layers[0]}:${opts.layers[1]}`, '--port', '0', '--host', '127.0.0.1'];
  if (opts.threads) args.push('--threads', String(opts.threads));
  args.push(...(opts.extraArgs ?? []));
  const child = spawn(process.execPath, args, { cwd: REPO, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const url = await waitListening(child, logs, opts.agentId, opts.startTimeoutMs).catch(async (err: unknown) => {
    child.kill('SIGKILL');
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw err;
  });
  return {
    url,
    pid: child.pid!,
    agentId: opts.agentId,
    publicKey: key.publicKey,
    dir,
    logs,
    async stop(graceMs = 10_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const code = await exited;
        clearTimeout(timer);
        if (ownDir) await rm(dir, { recursive: true, force: true });
        return code;
      }
      if (ownDir) await rm(dir, { recursive: true, force: true });
      return child.exitCode;
    },
  };
}
