/**
 * The agent's HTTP server (node:http): routes to AgentCore, NDJSON streaming with backpressure,
 * client-disconnect cancellation, metrics and health, graceful drain.
 *
 * @example
 * const agent = await startAgentServer({ agentId, signingKey, edgeKeys, span, port: 0 });
 * console.log(agent.url); // http://127.0.0.1:43121
 * await agent.close();
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentCore, linkCap, type AgentCoreOptions } from './agent.js';
import { AgentError, toAgentError } from './errors.js';
import { readBody, readJsonBody, sendError, sendJson } from './http.js';
import { FORWARD_PATH, linkPool } from './remote-stage.js';
import { createCheckService, type CheckService } from './checks.js';
import { CHECK_PATH } from '../../protocol/check.js';
import type { Duplex } from 'node:stream';
import type { LoadedSpan } from '../runtime/types.js';
import { Link, LINK_HOP_HEADER, LINK_PATH, LINK_PROTOCOL, LINK_TICKET_HEADER, MAX_LINK_HEADER_BYTES, TAP_JOB_HEADER, TAP_PATH, TAP_SIGNATURE_HEADER, TAP_TICKET_HEADER } from './link.js';

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

/** Frames a link may hold unhandled before its socket is paused. */
const MAX_QUEUED_LINK_FRAMES = 4;

/** Answers a refused upgrade with the agent's JSON error and closes the socket. */
function refuseUpgrade(socket: Duplex, err: AgentError): void {
  const body = JSON.stringify(err.toEnvelope());
  const retry = err.retryAfter ? `retry-after: ${err.retryAfter}\r\n` : '';
  socket.end(`HTTP/1.1 ${err.status} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${retry}connection: close\r\n\r\n${body}`);
}

/** The links and taps an agent holds, and its links by the hash of the ticket they were opened with. */
interface LinkTable {
  all: Set<Link>;
  byTicket: Map<string, Link>;
}

/**
 * `GET /v1/spans/link` and `GET /v1/spans/tap` with `Upgrade: layernet-link/1` (see link.ts).
 * A link is opened with the job's signed ticket (checked before the upgrade; one link per ticket)
 * and carries that job's frames, one after the other; a link without a session, idle past the
 * session idle time, is closed, and closing a link frees the sessions it opened. A tap only
 * carries tokens to the head. At most linkCap(limits) links and taps are held at once.
 */
function handleUpgrade(core: AgentCore, req: IncomingMessage, socket: Duplex, head: Buffer, links: LinkTable): void {
  socket.on('error', () => undefined);
  const path = new URL(req.url ?? '/', 'http://agent').pathname;
  if (String(req.headers.upgrade).toLowerCase() !== LINK_PROTOCOL || (path !== LINK_PATH && path !== TAP_PATH)) {
    refuseUpgrade(socket, new AgentError('not_found', `no upgrade to ${String(req.headers.upgrade)} on ${path}`));
    return;
  }
  if (core.draining && path === LINK_PATH) {
    refuseUpgrade(socket, new AgentError('shutdown', 'this agent is shutting down', { retryAfter: 5 }));
    return;
  }
  const full = (): boolean => {
    if (links.all.size < linkCap(core.limits)) return false;
    // A link kept idle by a previous hop for its next job (one job ran on it, no session now) makes
    // room: that hop opens a new one when it needs it.
    for (const l of links.all) {
      if (l.opened?.ran && !core.holdsSessionsOf(l)) {
        l.close(); // (its failure handler takes it out of the table)
        return false;
      }
    }
    core.metrics.errors.inc({ code: 'capacity' });
    refuseUpgrade(socket, new AgentError('capacity', `this agent holds ${links.all.size} links, its limit`, { retryAfter: 1 }));
    return true;
  };
  if (full()) return;
  const accept = () => {
    (socket as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${LINK_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
  };
  if (path === TAP_PATH) {
    // Nothing comes from the head on a tap: any byte is a protocol error.
    const tap = new Link(socket, { maxPayloadBytes: 0 });
    try {
      core.attachTap(String(req.headers[TAP_JOB_HEADER] ?? ''), String(req.headers[TAP_TICKET_HEADER] ?? ''), String(req.headers[TAP_SIGNATURE_HEADER] ?? ''), tap);
    } catch (err) {
      refuseUpgrade(socket, toAgentError(err));
      return;
    }
    tap.onUnsolicited = () => tap.close();
    accept();
    links.all.add(tap);
    tap.onFailed(() => links.all.delete(tap));
    return;
  }
  core.checkLinkOpening(req.headers[LINK_TICKET_HEADER], req.headers[LINK_HOP_HEADER]).then(
    (opened) => {
      if (socket.destroyed || full()) return;
      if (links.byTicket.has(opened.ticketHash)) {
        refuseUpgrade(socket, new AgentError('conflict', `the ticket of job ${opened.jobId} already opened a link to this agent`));
        return;
      }
      accept();
      serveLink(core, socket, head, links, opened);
    },
    (err: unknown) => {
      if (!socket.destroyed) refuseUpgrade(socket, toAgentError(err));
    },
  );
}

/** Runs an accepted link's frames, one at a time, for the job it was opened for. */
function serveLink(core: AgentCore, socket: Duplex, head: Buffer, links: LinkTable, opened: Omit<NonNullable<Link['opened']>, 'ran'>): void {
  const link = new Link(socket, { maxPayloadBytes: core.limits.maxFramePayloadBytes }, head);
  link.opened = { ...opened, ran: false };
  links.all.add(link);
  links.byTicket.set(opened.ticketHash, link);
  // A link that carries no session for the idle time goes; one whose session is busy (a long
  // prefill upstream) stays: sessions expire on their own, and then the link follows.
  (socket as { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(core.limits.idleMs, () => {
    if (!core.holdsSessionsOf(link)) link.close();
  });
  let queue = Promise.resolve();
  // Frames run one at a time; a peer that sends ahead is paused rather than buffered without end.
  let waiting = 0;
  link.onUnsolicited = (bytes) => {
    if (++waiting > MAX_QUEUED_LINK_FRAMES) socket.pause();
    queue = queue.then(async () => {
      const answer = await core.handleLinkFrame(bytes, link);
      if (answer && !link.error) link.send(answer);
      if (--waiting <= MAX_QUEUED_LINK_FRAMES) socket.resume();
    });
  };
  // (A link whose stream is not frames has already dropped its socket: nothing can be answered.)
  link.onFailed(() => {
    links.all.delete(link);
    if (links.byTicket.get(opened.ticketHash) === link) links.byTicket.delete(opened.ticketHash);
    void queue.then(() => core.linkClosed(link));
  });
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
  const links: LinkTable = { all: new Set(), byTicket: new Map() };
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => handleUpgrade(core, req, socket, head, links));
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
      for (const l of links.all) l.close();
      // Idle links this agent kept to later hops (shared by the agents of one process: they reopen).
      linkPool.closeAll();
      setTimeout(() => server.closeAllConnections(), 1_000).unref();
      await stopped;
    })());
  core.log.info('agent listening', { url, agentId: core.agentId, modelId: core.span.modelId, layers: core.span.layers });
  return { url, port, core, server, drain: shut, close: () => shut(0) };
}
