/**
 * `pool-agent serve`: loads the span, starts the server, prints one JSON line with the bound URL
 * (for a parent process), writes the port to the state folder, sends heartbeats when registered,
 * and drains on SIGTERM/SIGINT.
 */
import { join, resolve } from 'node:path';
import { loadRawConfig, loadState, mergeSettings, PORT_FILE, resolveStateDir, writeFileAtomic } from '../config.js';
import { loadIdentity } from '../identity.js';
import { createLogger, type Logger } from '../log.js';
import { manifestHash, weightFormat } from '../../protocol/manifest.js';
import { loadManifest } from '../model/build.js';
import { loadAgentSpan } from '../runtime/local-pipeline.js';
import type { LoadProgress } from '../runtime/span.js';
import { availableMemoryBytes, loadMemoryWarning } from '../runtime/load-memory.js';
import { startAgentServer } from '../server/app.js';
import { startHeartbeats } from '../server/heartbeat.js';
import { CliError, NO_MODEL, parseFlags, parseLayers, parseNumber, spanFileBytes, str, type CliIo } from './args.js';
import { resolveProvider } from './provider.js';
import { portWarning, spanRefusal } from './registration.js';

export const SERVE_USAGE = `Usage: pool-agent serve [--dir DIR] [--port N] [--host ADDR] [--model DIR] [--layers A:B] [--threads N]
                      [--endpoint URL] [--max-sessions N] [--provider auto|cpu|cuda] [--devices cuda:0,cuda:1]
                      [--hop-transport link|post]

Serves this agent's span of the model: the one registered (pool-agent register), on the
endpoint's port that register recorded; another --layers or model is refused until you register
again, another --port is a warning (fine behind a proxy or port forward). --devices cuts the span evenly over several local devices
(one onnxruntime session each, run as a local pipeline); the network still sees one span. Prints {"event":"listening","url":...} on stdout once
bound and writes the port to DIR/port. --hop-transport: how this agent, as the head of a route,
reaches the later hops (default link: one connection per job and hop, kept for later jobs, a decode step goes once round
the ring; post: one HTTP request per step and hop). --provider: auto (default) loads the span on
CUDA when a probe runs a session there (pool-agent hardware shows it), else on the CPU and logs
why; cuda (or a cuda:N in --devices) is refused with the probe's reason when CUDA is not usable.
Settings come from DIR/pool-agent.json; flags win.
SIGTERM/SIGINT: stop taking jobs, finish running ones (shutdownGraceMs), then exit. A bug that
escapes (an unhandled rejection or exception) is logged and drains the agent the same way, then it
exits 1 for its supervisor to restart it.`;

/**
 * Node stops a process at once on an unhandled rejection or exception, which would end every job
 * on the host. `serve` logs it instead (message and stack) and calls `stop` (a drain, as on
 * SIGTERM); a second one while draining calls `exitNow(1)`. Returns whether one was seen, and the
 * function that removes the handlers.
 */
export function watchForBugs(proc: NodeJS.EventEmitter, log: Logger, stop: (why: string) => void, exitNow: (code: number) => void): { seen(): boolean; remove(): void } {
  let seen = false;
  const handler = (kind: 'unhandledRejection' | 'uncaughtException') => (err: unknown) => {
    log.error(`${kind}: a bug in the agent; it drains, then exits 1`, {
      error: err instanceof Error ? err.message : String(err),
      stack: err instanceof Error ? err.stack : undefined,
    });
    if (seen) return exitNow(1);
    seen = true;
    stop(kind);
  };
  const onRejection = handler('unhandledRejection');
  const onException = handler('uncaughtException');
  proc.on('unhandledRejection', onRejection);
  proc.on('uncaughtException', onException);
  return {
    seen: () => seen,
    remove: () => {
      proc.off('unhandledRejection', onRejection);
      proc.off('uncaughtException', onException);
    },
  };
}

export async function runServe(argv: string[], io: CliIo): Promise<number> {
  const { values, help } = parseFlags(
    argv,
    {
      dir: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      model: { type: 'string' },
      layers: { type: 'string' },
      threads: { type: 'string' },
      endpoint: { type: 'string' },
      'max-sessions': { type: 'string' },
      provider: { type: 'string' },
      devices: { type: 'string' },
      'hop-transport': { type: 'string' },
    },
    SERVE_USAGE,
  );
  if (help) return io.out(SERVE_USAGE), 0;
  const dir = resolveStateDir(str(values.dir), io.env);
  const config = mergeSettings(await loadRawConfig(dir), {
    port: parseNumber('port', str(values.port), { int: true, min: 0, max: 65535 }),
    host: str(values.host),
    modelDir: str(values.model),
    layers: parseLayers(str(values.layers)),
    threads: parseNumber('threads', str(values.threads), { int: true, min: 0 }),
    endpoint: str(values.endpoint),
    maxSessions: parseNumber('max-sessions', str(values['max-sessions']), { int: true, min: 1 }),
    provider: str(values.provider),
    devices: str(values.devices)?.split(',').map((d) => d.trim()),
    hopTransport: str(values['hop-transport']),
  });
  const state = await loadState(dir);
  if (!state.agentId) throw new CliError(`this agent is not registered: run \`pool-agent register\` (state folder ${dir})`);
  const edgeKeys = { ...state.edgeKeys, ...config.edgeKeys };
  if (Object.keys(edgeKeys).length === 0) throw new CliError('no trusted edge keys: run `pool-agent register`, or set edgeKeys in pool-agent.json');
  if (!config.modelDir) throw new CliError(NO_MODEL);
  const key = await loadIdentity(dir);
  const modelDir = resolve(config.modelDir);
  const manifest = await loadManifest(modelDir);
  const layers = config.layers ?? [0, manifest.architecture.numLayers];
  // Refused, not warned: the edge routes by the registered span (see spanRefusal).
  const refusal = spanRefusal(state.registration, { modelId: await manifestHash(manifest), layers });
  if (refusal) throw new CliError(refusal);
  const log = createLogger({ level: config.logLevel, base: { agentId: state.agentId } });
  // Refused here, with the probe's reason, when --provider cuda (or a CUDA device) cannot run; auto falls back to the CPU.
  const settings = { ...config, provider: await resolveProvider(config, log) };
  // A large span takes a while (every file is read and hashed, then onnxruntime prepares it).
  const loadStart = performance.now();
  const mb = (n: number) => Math.round(n / 2 ** 20);
  const spanBytes = spanFileBytes(manifest, layers);
  log.info('loading span', { modelDir, layers, mb: mb(spanBytes) });
  const memoryWarning = loadMemoryWarning(spanBytes, availableMemoryBytes(), weightFormat(manifest));
  if (memoryWarning) log.warn(memoryWarning);
  // Every file at debug level; at info, where the load stands every 2 s at most.
  let shownAt = loadStart;
  const onProgress = (p: LoadProgress) => {
    const where = p.stage === 'file' ? { file: p.file, files: `${p.filesDone}/${p.files}`, mb: `${mb(p.bytesDone)}/${mb(p.bytes)}` } : { session: `${p.session}/${p.sessions}` };
    const msg = p.stage === 'file' ? 'model file read' : 'creating onnxruntime session';
    const now = performance.now();
    if (now - shownAt >= 2_000) {
      shownAt = now;
      log.info(msg, where);
    } else log.debug(msg, where);
  };
  const span = await loadAgentSpan(modelDir, layers, settings, onProgress).catch((err: unknown) => {
    // A span that cannot be cut over the listed devices is the owner's settings, not a crash.
    throw err instanceof RangeError ? new CliError(err.message) : err;
  });
  log.info('span loaded', { provider: span.provider, ms: Math.round(performance.now() - loadStart) });
  const server = await startAgentServer({
    agentId: state.agentId,
    signingKey: key,
    edgeKeys,
    span,
    host: config.host,
    port: config.port,
    log,
    limits: { maxSessions: config.maxSessions, maxKvBytes: config.maxKvBytes, idleMs: config.sessionIdleMs, hopTimeoutMs: config.hopTimeoutMs, ...(config.maxLinks ? { maxLinks: config.maxLinks } : {}) },
    hopTransport: config.hopTransport,
    inputStore: { ttlMs: config.disclosure.keepMinutes * 60_000, maxJobs: config.disclosure.maxJobs, maxBytes: config.disclosure.maxMB * 1024 * 1024 },
    // Checks: per-hop blame re-runs the spans of a multi-hop route from this model folder.
    hopSpans: (spanLayers) => loadAgentSpan(modelDir, spanLayers, settings),
  });
  await writeFileAtomic(join(dir, PORT_FILE), String(server.port));
  const elsewhere = portWarning(state.registration, server.port);
  if (elsewhere) log.warn(elsewhere);
  io.out(JSON.stringify({ event: 'listening', url: server.url, port: server.port, agentId: state.agentId, modelId: span.modelId, layers, provider: span.provider }));
  const heartbeats =
    state.heartbeatUrl && state.heartbeatIntervalMs
      ? startHeartbeats({ dir, agentId: state.agentId, signingKey: key, url: state.heartbeatUrl, intervalMs: state.heartbeatIntervalMs, core: server.core, log })
      : null;
  let bugs: ReturnType<typeof watchForBugs> | undefined;
  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info('shutting down', { signal, graceMs: config.shutdownGraceMs });
      heartbeats?.stop();
      void server
        .drain(config.shutdownGraceMs)
        .then(() => span.close())
        .finally(resolveStop);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    bugs = watchForBugs(process, log, stop, (code) => process.exit(code));
  });
  bugs?.remove();
  log.info('stopped');
  return bugs?.seen() ? 1 : 0;
}
