/**
 * The edge app: a Hono factory with no runtime import. The Workers entry (worker.ts) and the
 * unit tests build it with their own deps.
 *
 * @example
 * const app = createApp({ store: createMemoryStore(), signingKey, transport: fetch, tokenizer: createByteTokenizer() });
 * const res = await app.request('/healthz');
 */
import { Hono } from 'hono';
import { ApiError } from '../protocol/errors.js';
import { resolveConfig, type EdgeConfig } from './config.js';
import { TtlCache } from './cache.js';
import type { CheckSettings } from './checks/settings.js';
import type { AppEnv, AgentTransport, Clock, EdgeCaches, EdgeDeps, EdgeSigningKey, EdgeTokenizer, TokenizerProvider } from './deps.js';
import { createTokenizerProvider } from './text/tokenizer-provider.js';
import type { RegistryStore } from '../db/registry-contract.js';
import { describeErrorChain, errorResponse } from './http/errors.js';
import { throttledLog } from './log.js';
import { registerCors } from './http/cors.js';
import { registerHealth } from './routes/health.js';
import { registerModels } from './routes/models.js';
import { registerChatCompletions } from './routes/chat-completions.js';
import { registerCompletions } from './routes/completions.js';
import { registerJobAttestation } from './routes/job-attestation.js';
import { registerPools } from './routes/pools.js';
import { registerEdgeKeys } from './routes/edge-keys.js';
import { registerOpenApi } from './routes/openapi.js';
import { registerAdminStake } from './routes/admin-stake.js';
import { UnstakedTrafficWindow } from './trust/unstaked-window.js';
import { registerOwnerPools } from './routes/owner-pools.js';
import { registerOwnerModels } from './routes/owner-models.js';
import { registerOwnerModel } from './routes/owner-model.js';
import { registerOwnerModelFiles } from './routes/owner-model-files.js';
import { registerOwnerAgents } from './routes/owner-agents.js';
import { registerHeartbeat } from './routes/heartbeat.js';

/**
 * Tokenizers: a provider (the Workers entry builds one), or just the built-in kind's tokenizer,
 * around which a provider is made (imported models then load their files from the store).
 */
export type TokenizerOptions = { tokenizers: TokenizerProvider; tokenizer?: never } | { tokenizer: EdgeTokenizer; tokenizers?: never };

export type CreateAppOptions = BaseAppOptions & TokenizerOptions;

export interface BaseAppOptions {
  store: RegistryStore;
  signingKey: EdgeSigningKey;
  transport: AgentTransport;
  clock?: Clock;
  config?: Partial<EdgeConfig>;
  caches?: Partial<EdgeCaches>;
  random?: () => number;
  /** Used when the request has no Workers execution context (Node, tests). */
  waitUntil?: (work: Promise<unknown>) => void;
  log?: (entry: Record<string, unknown>) => void;
  /** Re-execution checks: the CHECK_SECRET key and rate override (absent: checks off). */
  checks?: CheckSettings | null;
}

export function buildDeps(opts: CreateAppOptions): EdgeDeps {
  const config = resolveConfig(opts.config);
  const clock = opts.clock ?? { now: () => Date.now() };
  // Entries with a `throttle` key are written once per key and window (edge/log.ts).
  const log = throttledLog(
    opts.log ??
      ((entry: Record<string, unknown>) => {
        const line = JSON.stringify(entry);
        if (entry.level === 'error') console.error(line);
        else if (entry.level === 'warn') console.warn(line);
        else console.log(line);
      }),
    () => clock.now(),
  );
  return {
    store: opts.store,
    signingKey: opts.signingKey,
    transport: opts.transport,
    tokenizers: opts.tokenizers ?? createTokenizerProvider({ builtin: opts.tokenizer!, log }),
    clock,
    config,
    caches: {
      keys: opts.caches?.keys ?? new TtlCache(config.keyCacheTtlMs),
      models: opts.caches?.models ?? new TtlCache(config.modelCacheTtlMs, 1_000),
      candidates: opts.caches?.candidates ?? new TtlCache(config.candidateCacheTtlMs, 1_000),
      modelList: opts.caches?.modelList ?? new TtlCache(config.candidateCacheTtlMs, 4),
      unstakedTraffic: opts.caches?.unstakedTraffic ?? new UnstakedTrafficWindow(),
    },
    random: opts.random ?? Math.random,
    checks: opts.checks ?? null,
    waitUntil:
      opts.waitUntil ??
      ((work) => {
        work.catch((err: unknown) => log({ level: 'error', msg: 'background work failed', error: describeErrorChain(err) }));
      }),
    log,
  };
}

export function createApp(opts: CreateAppOptions): Hono<AppEnv> {
  const deps = buildDeps(opts);
  const app = new Hono<AppEnv>();

  app.use('*', async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && /^[A-Za-z0-9._-]{1,64}$/.test(incoming) ? incoming : `req_${crypto.randomUUID()}`;
    c.set('requestId', requestId);
    let ctx: { waitUntil(p: Promise<unknown>): void } | undefined;
    try {
      ctx = c.executionCtx;
    } catch {
      ctx = undefined; // Node / app.request(): no execution context.
    }
    const waitUntil = ctx
      ? (work: Promise<unknown>) =>
          ctx!.waitUntil(work.catch((err: unknown) => deps.log({ level: 'error', msg: 'background work failed', requestId, error: describeErrorChain(err) })))
      : deps.waitUntil;
    const scopedStore = c.env && typeof c.env === 'object' ? c.env.store : undefined;
    c.set('deps', ctx || scopedStore ? { ...deps, waitUntil, ...(scopedStore ? { store: scopedStore } : {}) } : deps);
    await next();
    c.res.headers.set('x-request-id', requestId);
  });

  // Before every route: a preflight is answered before authentication.
  registerCors(app, deps.config.corsOrigins);

  app.onError((err, c) => errorResponse(err, c.get('requestId') ?? 'unknown', deps.log));
  app.notFound((c) => errorResponse(new ApiError('not_found', `no route for ${c.req.method} ${c.req.path}`), c.get('requestId') ?? 'unknown'));

  registerHealth(app);
  registerModels(app);
  registerChatCompletions(app);
  registerCompletions(app);
  registerJobAttestation(app);
  registerPools(app);
  registerEdgeKeys(app);
  registerOwnerPools(app);
  registerOwnerModels(app);
  registerOwnerModel(app);
  registerOwnerModelFiles(app);
  registerOwnerAgents(app);
  registerHeartbeat(app);
  registerOpenApi(app);
  registerAdminStake(app);
  return app;
}
