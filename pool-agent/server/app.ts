/**
 * The agent's HTTP server (node:http): routes to AgentCore, NDJSON streaming with backpressure,
 * client-disconnect cancellation, metrics and health, graceful drain. Upgrades to links and taps
 * go to the link server (link-server.ts).
 *
 * @example
 * const agent = await startAgentServer({ agentId, signingKey, edgeKeys, span, port: 0 });
 * console.log(agent.url); // http://127.0.0.1:43121
 * await agent.close();
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentCore, type AgentCoreOptions } from './agent.js';
import { AgentError, toAgentError } from './errors.js';
import { readBody, readJsonBody, sendError, sendJson } from './http.js';
import { FORWARD_PATH } from './hop-post.js';
import { linkPool } from './link-pool.js';
import { LinkServer } from './link-server.js';
import { createCheckService, type CheckService } from './checks.js';
import { CHECK_PATH } from '../../protocol/check.js';
import type { Duplex } from 'node:stream';
import type { LoadedSpan } from '../runtime/types.js';
import { MAX_LINK_HEADER_BYTES } from './link.js';

export interface AgentServerOptions extends AgentCoreOptions {
  /** Loads other layers of the model (checks: per-hop blame re-runs each hop's span); see checks.ts. */
  hopSpans?: (layers: readonly [number, number]) => Promise<LoadedSpan>;
  host?: string;
  port?: number;
  /** How often idle sessions and old committed inputs are swept (ms). */
  sweepIntervalMs?: number;
}

export interface AgentServer {
  /** Base URL the server listens on, e.g. http://127.0.0.1:43121. */
  url: string;
  port: number;
  core: AgentCore;
  server: Server;
  /** Stops accepting jobs, finishes running ones up to `graceMs`, then closes. */
  drain(graceMs: number): Promise<void>;
  /** Closes at once: running jobs end with error `shutdown`. */
  close(): Promise<void>;
}

const JOB_CANCEL = /^\/v1\/jobs\/([^/]{1,64})\/cancel$/;

async function writeLine(res: ServerResponse, line: string): Promise<void> {
  if (res.destroyed) return;
  if (!res.write(line)) {
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }
}

async function handleJob(core: AgentCore, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readJsonBody(req, core.limits.maxJobBodyBytes);
  const job = await core.prepareJob(body);
  const ctl = new AbortController();
  // The edge went away: stop generating and free the session.
  res.on('close', () => {
    if (!res.writableFinished) ctl.abort('disconnect');
  });
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-job-id': job.ticket.jobId });
  res.flushHeaders();
  for await (const ev of job.events(ctl.signal)) {
    await writeLine(res, JSON.stringify(ev) + '\n');
  }
  res.end();
}

async function route(core: AgentCore, req: IncomingMessage, res: ServerResponse, checks?: CheckService): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://agent');
  const path = url.pathname;
  if (req.method === 'GET' && path === '/healthz') {
    sendJson(res, core.draining ? 503 : 200, {
      ok: !core.draining,
      agentId: core.agentId,
      modelId: core.span.modelId,
      layers: core.span.layers,
      sessions: core.sessions.size,
      activeJobs: core.activeJobs,
      freeKvBytes: core.sessions.freeKvBytes,
    });
    return;
  }
  if (req.method === 'GET' && path === '/metrics') {
    const text = core.metrics.render();
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  if (req.method === 'POST' && path === '/v1/jobs') return handleJob(core, req, res);
  if (req.method === 'POST' && path === CHECK_PATH && checks) return checks.handle(req, res);
  if (req.method === 'POST' && path === FORWARD_PATH) {
    let answer: { status: number; body: Uint8Array };
    try {
      // Frame header + meta + payload, bounded by the payload limit plus the meta limit.
      answer = await core.handleFrame(await readBody(req, core.limits.maxFramePayloadBytes + 512 * 1024));
    } catch (err) {
      answer = core.errorFrame(toAgentError(err));
    }
    const { status, body } = answer;
    res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-length': body.byteLength });
    res.end(body);
    return;
  }
  const cancel = req.method === 'POST' ? JOB_CANCEL.exec(path) : null;
  if (cancel) {
    const body = await readJsonBody(req, 16 * 1024);
    sendJson(res, 200, await core.cancel(decodeURIComponent(cancel[1]!), body));
    return;
  }
  if (req.method === 'POST' && path === '/v1/checks/inputs') {
    const body = await readJsonBody(req, 16 * 1024);
    sendJson(res, 200, await core.checkInputs(body));
    return;
  }
  throw new AgentError('not_found', `no route for ${req.method} ${path}`);
}

/** Starts an agent on `host:port` (default 127.0.0.1:0) and resolves once it listens. */
export async function startAgentServer(opts: AgentServerOptions): Promise<AgentServer> {
  const core = new AgentCore(opts);
  const checks = createCheckService({ agentId: opts.agentId, signingKey: opts.signingKey, edgeKeys: () => opts.edgeKeys, span: opts.span, ...(opts.hopSpans ? { hopSpans: opts.hopSpans } : {}), ...(opts.clock ? { clock: opts.clock } : {}), log: core.log });
  const server = createServer({ maxHeaderSize: MAX_LINK_HEADER_BYTES }, (req, res) => {
    route(core, req, res, checks).catch((err) => {
      const e = toAgentError(err);
      if (e.code === 'internal_error') core.log.error('request failed', { path: req.url, error: err as Error });
      core.metrics.errors.inc({ code: e.code });
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendError(res, e);
    });
  });
  // Link frames go through the core's entry point, as POSTed ones do (one place to observe both).
  const links = new LinkServer(core, core);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => links.handleUpgrade(req, socket, head));
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // job streams run long; bodies have their own timeouts
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host && opts.host !== '0.0.0.0' && opts.host !== '::' ? opts.host : '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const sweeper = setInterval(() => core.sweep(), opts.sweepIntervalMs ?? 5_000);
  sweeper.unref();
  let closed: Promise<void> | null = null;
  const shut = (graceMs: number) =>
    (closed ??= (async () => {
      // Keep listening while draining: a middle hop's pooled connections must keep working
      // until the chains through it finish; new jobs and sessions are refused meanwhile.
      await core.drain(graceMs);
      const stopped = new Promise<void>((r) => server.close(() => r()));
      clearInterval(sweeper);
      server.closeIdleConnections();
      links.closeAll();
      // Idle links this agent kept to later hops (shared by the agents of one process: they reopen).
      linkPool.closeAll();
      setTimeout(() => server.closeAllConnections(), 1_000).unref();
      await stopped;
    })());
  core.log.info('agent listening', { url, agentId: core.agentId, modelId: core.span.modelId, layers: core.span.layers });
  return { url, port, core, server, drain: shut, close: () => shut(0) };
}
