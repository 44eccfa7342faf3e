/**
 * A misbehaving agent for the attack suite: an honest `pool-agent serve` (or an in-process agent)
 * behind a node:http proxy that is registered as the agent's endpoint, so the edge and the other
 * agents only ever reach it through the proxy. The proxy passes traffic through unchanged until a
 * test installs a tamper: it rewrites NDJSON job events from the agent, forward frames to it, and
 * records what went through (job requests, chunk lines, forward frames) for replay attacks.
 *
 * @example
 * const evil = await addProxiedAgent(net, { name: 'evil', region: 'eu-west', price: 0.05 });
 * evil.proxy.tamper = { jobEvent: (ev) => (ev.type === 'chunk' ? { ...ev, tokenIds: [7] } : ev) };
 * // ... run requests through the edge, then:
 * evil.proxy.tamper = {};
 */
import { spawn } from 'node:child_process';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { FrameReader } from '../../protocol/frame.js';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { attestationHash, signAttestation, tokenCommitment, type SignedAttestation } from '../../protocol/attestation.js';
import type { SigningKey } from '../../protocol/keys.js';
import { loadState, saveState } from '../../pool-agent/config.js';
import { loadIdentity } from '../../pool-agent/identity.js';
import { runInit } from '../../pool-agent/cli/init.js';
import { runRegister } from '../../pool-agent/cli/register.js';
import { loadManifest } from '../../pool-agent/model/build.js';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import type { LoadedSpan } from '../../pool-agent/runtime/types.js';
import { startAgentServer, type AgentServer } from '../../pool-agent/server/app.js';
import { startHeartbeats } from '../../pool-agent/server/heartbeat.js';
import { manifestHash } from '../../protocol/manifest.js';
import { waitListening } from './agents.js';
import { TEST_MODEL_DIR } from './model.js';
import type { AgentSpec, NetworkAgent, TestNetwork } from './network.js';

const REPO = resolve(import.meta.dirname, '../..');
const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** A job event as the agent wrote it (untrusted JSON: the proxy may make it anything). */
export type WireEvent = Record<string, unknown> & { type?: string };
export interface WireChunk {
  type: 'chunk';
  steps: [number, number];
  tokenIds: number[];
  attestations: SignedAttestation[];
}

export interface JobContext {
  /** The parsed `POST /v1/jobs` body of this stream. */
  request: { signedTicket: { ticket: { jobId: string } }; promptIds: number[]; prefixIds: number[] };
  /** Index of this event in the stream. */
  index: number;
}

export interface Tamper {
  /** Rewrites one NDJSON event of a job stream from the agent (null drops it). */
  jobEvent?(ev: WireEvent, ctx: JobContext): WireEvent | null | Promise<WireEvent | null>;
  /** Rewrites a binary frame sent to the agent on `POST /v1/spans/forward` or over a link. */
  forwardRequest?(bytes: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

export interface EvilProxy {
  url: string;
  /** Where traffic goes (the real agent); requests fail with 502 until it is set. */
  target: string | null;
  tamper: Tamper;
  /** Every `POST /v1/jobs` body seen, in order. */
  readonly jobRequests: JobContext['request'][];
  /** Every NDJSON event line the agent wrote (before tampering), by job id. */
  readonly jobEvents: Map<string, WireEvent[]>;
  /** Every frame sent to the agent by POST or over a link (before tampering). */
  readonly forwardFrames: Uint8Array[];
  /** How many events or frames a tamper function changed or dropped. */
  tampered: number;
  /** Method, path and upstream status of every request passed on. */
  readonly responses: { method: string; path: string; status: number }[];
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > MAX_BODY_BYTES) throw new Error('body too large for the test proxy');
    parts.push(part);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Starts the proxy on 127.0.0.1, port 0. */
export async function startEvilProxy(): Promise<EvilProxy> {
  const proxy: EvilProxy = {
    url: '',
    target: null,
    tamper: {},
    jobRequests: [],
    jobEvents: new Map(),
    forwardFrames: [],
    tampered: 0,
    responses: [],
    close: async () => undefined,
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (!proxy.target) {
      res.writeHead(502).end('no target yet');
      return;
    }
    const path = req.url ?? '/';
    let body: Uint8Array | undefined = req.method === 'POST' ? await readBody(req) : undefined;
    let job: JobContext['request'] | null = null;
    if (req.method === 'POST' && path === '/v1/jobs' && body) {
      try {
        job = JSON.parse(Buffer.from(body).toString('utf8')) as JobContext['request'];
        proxy.jobRequests.push(job);
      } catch {
        job = null;
      }
    }
    if (req.method === 'POST' && path === '/v1/spans/forward' && body) {
      proxy.forwardFrames.push(body.slice());
      if (proxy.tamper.forwardRequest) {
        const changed = await proxy.tamper.forwardRequest(body);
        if (Buffer.compare(Buffer.from(changed), Buffer.from(body)) !== 0) proxy.tampered++;
        body = changed;
      }
    }
    const ctl = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ctl.abort();
    });
    const headers: Record<string, string> = {};
    for (const h of ['content-type', 'accept']) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    const upstream = await fetch(new URL(path, proxy.target), { method: req.method ?? 'GET', headers, ...(body ? { body: Buffer.from(body) } : {}), signal: ctl.signal });
    proxy.responses.push({ method: req.method ?? 'GET', path, status: upstream.status });
    const outHeaders: Record<string, string> = {};
    const ct = upstream.headers.get('content-type');
    if (ct) outHeaders['content-type'] = ct;
    if (!job || !upstream.ok || !upstream.body) {
      const bytes = new Uint8Array(await upstream.arrayBuffer());
      res.writeHead(upstream.status, outHeaders).end(bytes);
      return;
    }
    // An NDJSON job stream: line by line, as the agent writes it.
    res.writeHead(upstream.status, outHeaders);
    res.flushHeaders();
    const jobId = job.signedTicket?.ticket?.jobId ?? '?';
    const seen = proxy.jobEvents.get(jobId) ?? [];
    proxy.jobEvents.set(jobId, seen);
    const decoder = new TextDecoder();
    let buffered = '';
    let index = 0;
    const emit = async (line: string) => {
      if (!line.trim()) return;
      const ev = JSON.parse(line) as WireEvent;
      seen.push(structuredClone(ev));
      const tamper = proxy.tamper.jobEvent;
      if (!tamper) {
        res.write(line + '\n');
        return;
      }
      const out = await tamper(structuredClone(ev), { request: job!, index: index++ });
      const text = out === null ? null : JSON.stringify(out);
      if (text !== JSON.stringify(ev)) proxy.tampered++;
      if (text !== null) res.write(text + '\n');
    };
    for await (const part of upstream.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(part, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        await emit(line);
      }
    }
    await emit(buffered + decoder.decode());
    res.end();
  };

  /**
   * Links and taps (HTTP upgrades): the handshake and everything from the agent pass through
   * unchanged; frames to the agent are split out and go through `tamper.forwardRequest`.
   */
  const upgraded = new Set<Duplex>();
  const upgrade = (req: IncomingMessage, client: Duplex, head: Buffer) => {
    client.on('error', () => undefined);
    // Upgraded sockets leave the server's books: close() ends them itself.
    upgraded.add(client);
    client.on('close', () => upgraded.delete(client));
    if (!proxy.target) {
      client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host') headers[k] = v;
    const up = httpRequest(new URL(req.url ?? '/', proxy.target), { method: req.method ?? 'GET', headers });
    up.on('upgrade', (res, agent, agentHead) => {
      agent.on('error', () => undefined);
      proxy.responses.push({ method: req.method ?? 'GET', path: req.url ?? '/', status: 101 });
      const lines = [`HTTP/1.1 101 Switching Protocols`, ...Object.entries(res.headers).map(([k, v]) => `${k}: ${String(v)}`)];
      client.write(lines.join('\r\n') + '\r\n\r\n');
      if (agentHead.byteLength) client.write(agentHead);
      agent.pipe(client);
      const reader = new FrameReader({ maxPayloadBytes: MAX_BODY_BYTES });
      let chain = Promise.resolve();
      const fromClient = (chunk: Buffer) => {
        let frames: Uint8Array[];
        try {
          frames = reader.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        } catch {
          agent.write(chunk); // not frames: pass on and let the agent refuse it
          return;
        }
        for (const f of frames) {
          chain = chain.then(async () => {
            proxy.forwardFrames.push(f.slice());
            let out = f;
            if (proxy.tamper.forwardRequest) {
              out = await proxy.tamper.forwardRequest(f.slice());
              if (Buffer.compare(Buffer.from(out), Buffer.from(f)) !== 0) proxy.tampered++;
            }
            agent.write(out);
          });
        }
      };
      if (head.byteLength) fromClient(head);
      client.on('data', fromClient);
      client.on('close', () => agent.destroy());
      agent.on('close', () => client.destroy());
    });
    up.on('response', (res) => {
      proxy.responses.push({ method: req.method ?? 'GET', path: req.url ?? '/', status: res.statusCode ?? 0 });
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const body = Buffer.concat(parts);
        client.end(`HTTP/1.1 ${res.statusCode} Refused\r\ncontent-type: application/json\r\ncontent-length: ${body.byteLength}\r\nconnection: close\r\n\r\n${body.toString('utf8')}`);
      });
    });
    up.on('error', () => client.destroy());
    up.end();
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(502).end('proxy error');
      else res.destroy();
    });
  });
  server.on('upgrade', upgrade);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      for (const socket of upgraded) socket.destroy();
      server.close(() => r());
    });
  return proxy;
}

export interface ProxiedAgent extends NetworkAgent {
  /** The agent's own URL (behind the proxy). */
  directUrl: string;
  proxy: EvilProxy;
  /** The agent's registered signing key (the cheater owns it). */
  key: SigningKey;
}

export interface ProxiedAgentSpec extends AgentSpec {
  /** Model folder the agent really serves (it is registered for the network's model). */
  serveModelDir?: string;
  /**
   * Run the agent in this process on a span built from the loaded one instead of spawning
   * `pool-agent serve` (a modified agent: e.g. other weights under the registered model id).
   */
  inProcessSpan?: (registered: { modelId: string; layers: [number, number] }) => Promise<LoadedSpan>;
}

/**
 * Registers an agent whose endpoint is an evil proxy, then starts the agent behind it. The agent
 * is pushed into `net.agents`, so `net.close()` stops it; the returned `close`-like `kill` also
 * stops the proxy.
 */
export async function addProxiedAgent(net: TestNetwork, spec: ProxiedAgentSpec): Promise<ProxiedAgent> {
  const proxy = await startEvilProxy();
  const dir = await mkdtemp(join(tmpdir(), `layernet-evil-${spec.name}-`));
  const logs: string[] = [];
  const io = { out: () => undefined, err: (l: string) => void logs.push(l), env: { ...process.env, LAYERNET_OWNER_TOKEN: spec.ownerToken ?? net.ownerToken } };
  const layers = spec.layers ?? [0, net.numLayers];
  if ((await runInit(['--dir', dir], io)) !== 0) throw new Error(`pool-agent init failed for ${spec.name}`);
  const reg = await runRegister(
    ['--dir', dir, '--edge', net.edgeUrl, '--region', spec.region, '--price', String(spec.price), '--pool-name', `pool-${spec.region}`,
      '--endpoint', proxy.url, '--model', TEST_MODEL_DIR, '--layers', `${layers[0]}:${layers[1]}`],
    io,
  );
  if (reg !== 0) throw new Error(`pool-agent register failed for ${spec.name}: ${logs.slice(-3).join('\n')}`);
  const state = await loadState(dir);
  if (spec.serveModelDir) {
    // `pool-agent serve` refuses a model other than the registered one; this agent starts anyway
    // (an agent from before that check, or an edited state file), so what is tested is the
    // agent's own refusal of each job for a model it does not serve.
    const { registration: _checked, ...unchecked } = state;
    await saveState(dir, unchecked);
  }
  const key = await loadIdentity(dir);
  const cleanupDir = () => rm(dir, { recursive: true, force: true });

  if (spec.inProcessSpan) {
    const span = await spec.inProcessSpan({ modelId: net.modelId, layers });
    let server: AgentServer;
    try {
      server = await startAgentServer({ agentId: state.agentId!, signingKey: key, edgeKeys: state.edgeKeys ?? {}, span, port: 0, host: '127.0.0.1' });
    } catch (err) {
      await span.close();
      throw err;
    }
    const beats = startHeartbeats({ dir, agentId: state.agentId!, signingKey: key, url: state.heartbeatUrl!, intervalMs: state.heartbeatIntervalMs ?? 5_000, core: server.core });
    proxy.target = server.url;
    let stopped = false;
    const kill = async () => {
      if (stopped) return;
      stopped = true;
      beats.stop();
      await server.close();
      await span.close();
      await proxy.close();
      // The state folder stays: a heartbeat in flight may still write its seq file there.
    };
    const agent: ProxiedAgent = { name: spec.name, id: state.agentId!, url: proxy.url, directUrl: server.url, pid: process.pid, region: spec.region, dir, logs, kill, stop: kill, proxy, key };
    net.agents.push(agent);
    return agent;
  }

  const port = await (await import('../../scripts/ports.js')).freePort();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(REPO, 'pool-agent/main.ts'), 'serve', '--dir', dir, '--host', '127.0.0.1', '--port', String(port),
      '--model', spec.serveModelDir ?? TEST_MODEL_DIR, '--layers', `${layers[0]}:${layers[1]}`, '--threads', '1', ...(spec.serveArgs ?? [])],
    { cwd: REPO, env: { ...process.env, ...spec.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const url = await waitListening(child, logs, spec.name);
  proxy.target = url;
  const exited = new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    await proxy.close();
    await cleanupDir();
  };
  const agent: ProxiedAgent = { name: spec.name, id: state.agentId!, url: proxy.url, directUrl: url, pid: child.pid!, region: spec.region, dir, logs, kill, stop: kill, proxy, key };
  net.agents.push(agent);
  return agent;
}

/**
 * A span that computes with `weightsDir`'s weights but claims the registered model (a cheating
 * agent that runs a cheaper or different model under the advertised model id).
 */
export async function impostorSpan(weightsDir: string, registeredModelDir: string, layers: [number, number]): Promise<LoadedSpan> {
  const real = await loadSpan(weightsDir, layers, { intraOpThreads: 1 });
  const manifest = await loadManifest(registeredModelDir);
  const modelId = await manifestHash(manifest);
  return {
    modelId,
    manifest,
    layers: real.layers,
    first: real.first,
    last: real.last,
    provider: real.provider,
    kvBytesPerToken: real.kvBytesPerToken,
    openSession: () => real.openSession(),
    close: () => real.close(),
  };
}

/**
 * A tamper that re-signs a single-hop stream with `key` after `rewrite` changed each attestation,
 * keeping the chain intact (prevHash, head input commitment, output commitment), so the edge's
 * inline checks cannot tell. `fakeToken` (when given) replaces every sampled token.
 */
export function resigningTamper(
  key: SigningKey,
  opts: { fakeToken?: (step: number) => number; rewrite?: (att: SignedAttestation['att']) => void },
): Tamper {
  const state = new Map<string, { prevHash: string | null; lastToken: number | null }>();
  return {
    async jobEvent(ev, ctx) {
      if (ev.type !== 'chunk') return ev;
      const chunk = ev as unknown as WireChunk;
      if (chunk.attestations.length !== 1) throw new Error('resigningTamper handles single-hop routes');
      const jobId = ctx.request.signedTicket.ticket.jobId;
      const s = state.get(jobId) ?? { prevHash: null, lastToken: null };
      state.set(jobId, s);
      const att = { ...chunk.attestations[0]!.att };
      if (opts.fakeToken) {
        const ids = chunk.tokenIds.map((_, i) => opts.fakeToken!(chunk.steps[0] + i));
        att.outputTokenIds = ids;
        att.outputCommitment = await tokenCommitment(ids);
        if (s.lastToken !== null) att.inputCommitment = await tokenCommitment([s.lastToken, ...ids.slice(0, -1)]);
        chunk.tokenIds = ids;
      }
      if (s.prevHash !== null) att.prevHash = s.prevHash;
      opts.rewrite?.(att);
      const signed = await signAttestation(key.privateKey, att);
      chunk.attestations = [signed];
      s.prevHash = await attestationHash(att);
      s.lastToken = chunk.tokenIds[chunk.tokenIds.length - 1]!;
      return chunk as unknown as WireEvent;
    },
  };
}
