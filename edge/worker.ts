/**
 * Cloudflare Workers entry of the edge: parses the environment once (a bad configuration is a
 * clear 500 naming the variable), builds the app once per isolate, and gives every request its
 * own postgres.js client (workerd forbids using a socket opened by another request), closed
 * once the response body and every waitUntil task are done. That store is guarded
 * (edge/http/registry-outage.ts): while the registry cannot be reached, or stops answering, a
 * request gets 503 with `retry-after`, not a 500 or a hang, and the next request after it is back
 * is served (nothing to restart: no connection outlives its request).
 *
 * Variables (edge/env.ts): DATABASE_URL (or a HYPERDRIVE binding), EDGE_SIGNING_KEY (Ed25519
 * PKCS#8, base64url), EDGE_KEY_ID; optional EDGE_LOCATION and tuning knobs; optional CHECK_SECRET
 * (base64url, >= 32 bytes: turns re-execution checks on) and CHECK_RATE_OVERRIDE (0..1).
 *
 * `scheduled` (the Cron Trigger in wrangler.toml, every minute; locally wrangler's
 * `/__scheduled` route, which `npm start` calls on a timer) runs the trust tick
 * (edge/checks/tick.ts): stale disputes voided, ended route blocks lifted, open disputes'
 * third checks retried. It shares this isolate's caches with the app.
 */
import postgres from 'postgres';
import type { ExecutionContext } from 'hono';
import { buildDeps, createApp, type CreateAppOptions } from './app.js';
import type { EdgeDeps } from './deps.js';
import { runTrustTick } from './checks/tick.js';
import { createLlamaTokenizer } from './text/llama-tokenizer.js';
import { createTokenizerProvider } from './text/tokenizer-provider.js';
import { importSigningKey } from '../protocol/keys.js';
import { ApiError } from '../protocol/errors.js';
import { describeErrorChain, errorResponse } from './http/errors.js';
import { guardedStore } from './http/registry-outage.js';
import { parseEdgeEnv } from './env.js';
import type { RegistryStore } from '../db/registry-contract.js';
import { createRegistryStore } from '../db/registry-store.js';
import { registryClientOptions } from '../db/client.js';
import { importCheckSecret } from './trust/sampling.js';
import { fromBase64Url } from '../protocol/bytes.js';

interface Isolate {
  app: ReturnType<typeof createApp>;
  /** The app's deps (same caches), for the scheduled tick; the store is bound per invocation. */
  deps: EdgeDeps;
  databaseUrl: string;
  edgeKey: { id: string; publicKey: string };
  keyPublished: boolean;
}

let isolate: Promise<Isolate> | undefined;

/** Where the Worker's own failures go (outside the app, which logs through its deps): workerd's log. */
const workerLog = (entry: Record<string, unknown>) => console.error(JSON.stringify(entry));

async function buildIsolate(rawEnv: unknown): Promise<Isolate> {
  const parsed = parseEdgeEnv(rawEnv);
  if (!parsed.ok) throw new ApiError('misconfigured', parsed.message);
  const { env, databaseUrl } = parsed;
  let key;
  try {
    key = await importSigningKey(env.EDGE_SIGNING_KEY);
  } catch {
    throw new ApiError('misconfigured', 'edge misconfigured: EDGE_SIGNING_KEY is not an Ed25519 PKCS#8 key');
  }
  let checkKey: CryptoKey | null = null;
  if (env.CHECK_SECRET) {
    try {
      checkKey = await importCheckSecret(fromBase64Url(env.CHECK_SECRET));
    } catch {
      throw new ApiError('misconfigured', 'edge misconfigured: CHECK_SECRET must be base64url of at least 32 bytes');
    }
  } else {
    // Once per isolate.
    console.warn(JSON.stringify({ level: 'warn', msg: 're-execution checks are off: CHECK_SECRET is not set' }));
  }
  const unscoped: RegistryStore = new Proxy({} as RegistryStore, {
    get() {
      throw new Error('the registry store is bound per request');
    },
  });
  const options: CreateAppOptions = {
    store: unscoped,
    signingKey: { id: env.EDGE_KEY_ID, publicKey: key.publicKey, privateKey: key.privateKey },
    transport: (url, init) => fetch(url, init),
    // Per isolate: imported models' tokenizers are loaded once and kept across requests.
    tokenizers: createTokenizerProvider({ builtin: createLlamaTokenizer(), log: (entry) => console.error(JSON.stringify(entry)) }),
    config: parsed.config,
    checks: { key: checkKey, rateOverride: env.CHECK_RATE_OVERRIDE ?? null },
  };
  const deps = buildDeps(options);
  const app = createApp({ ...options, caches: deps.caches });
  return { app, deps, databaseUrl, edgeKey: { id: env.EDGE_KEY_ID, publicKey: key.publicKey }, keyPublished: false };
}

/** Resolves when the body has been read to the end or cancelled; passes bytes through untouched. */
function watchBody(res: Response): { response: Response; done: Promise<void> } {
  if (!res.body) return { response: res, done: Promise.resolve() };
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const reader = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done: end } = await reader.read();
        if (end) {
          controller.close();
          finish();
        } else controller.enqueue(value);
      } catch (err) {
        controller.error(err);
        finish();
      }
    },
    async cancel(reason) {
      await reader.cancel(reason).catch(() => undefined);
      finish();
    },
  });
  return { response: new Response(body, res), done };
}

/** What a Cron Trigger passes (the fields used here). */
interface ScheduledEvent {
  cron: string;
  scheduledTime: number;
}

export default {
  async fetch(request: Request, rawEnv: unknown, ctx: ExecutionContext): Promise<Response> {
    let iso: Isolate;
    try {
      isolate ??= buildIsolate(rawEnv);
      iso = await isolate;
    } catch (err) {
      isolate = undefined;
      const requestId = `req_${crypto.randomUUID()}`;
      // Said on every request it fails (the isolate is built again on the next): an operator must see it. Messages name variables, never values.
      workerLog({ level: 'error', msg: 'edge cannot start: every request answers 500 until this is fixed', requestId, error: describeErrorChain(err) });
      return errorResponse(err, requestId);
    }
    const sql = postgres(iso.databaseUrl, registryClientOptions({ max: 1, idle_timeout: 5 }));
    const store = guardedStore(createRegistryStore(sql), { end: () => sql.end({ timeout: 0 }), log: iso.deps.log });
    const pending: Promise<unknown>[] = [];
    const scopedCtx = {
      waitUntil: (p: Promise<unknown>) => {
        pending.push(p);
        ctx.waitUntil(p);
      },
      passThroughOnException: () => ctx.passThroughOnException(),
      props: (ctx as { props?: unknown }).props,
    } as ExecutionContext;
    if (!iso.keyPublished) {
      // Once per isolate: agents and SDKs can then find this key in the registry too.
      iso.keyPublished = true;
      scopedCtx.waitUntil(
        store.upsertEdgeKey({ ...iso.edgeKey, at: Date.now() }).catch((err: unknown) => {
          // The registry was down (or refused it): the next request tries again.
          iso.keyPublished = false;
          workerLog({ level: 'warn', msg: 'edge key not published yet; the next request tries again', error: describeErrorChain(err) });
        }),
      );
    }
    let res: Response;
    try {
      res = await iso.app.fetch(request, { store }, scopedCtx);
    } catch (err) {
      // Thrown past Hono's error handler (the app answers its own errors): logged here, or nowhere.
      ctx.waitUntil(sql.end({ timeout: 5 }));
      const requestId = `req_${crypto.randomUUID()}`;
      workerLog({ level: 'error', msg: 'request failed outside the app', requestId, method: request.method, path: new URL(request.url).pathname, error: describeErrorChain(err) });
      return errorResponse(err, requestId);
    }
    const { response, done } = watchBody(res);
    ctx.waitUntil(
      (async () => {
        await done;
        // Background work may start more background work: wait until it settles.
        for (let seen = -1; seen !== pending.length; ) {
          seen = pending.length;
          await Promise.allSettled(pending.slice());
        }
        await sql.end({ timeout: 5 });
      })(),
    );
    return response;
  },

  /** The trust tick, awaited (so `/__scheduled` answers once it is done); a failure is logged and rethrown (the run shows as failed). */
  async scheduled(event: ScheduledEvent, rawEnv: unknown): Promise<void> {
    let iso: Isolate;
    try {
      isolate ??= buildIsolate(rawEnv);
      iso = await isolate;
    } catch (err) {
      isolate = undefined;
      workerLog({ level: 'error', msg: 'scheduled tick: edge misconfigured', error: describeErrorChain(err) });
      throw err;
    }
    const sql = postgres(iso.databaseUrl, registryClientOptions({ max: 1, idle_timeout: 5 }));
    try {
      const out = await runTrustTick({ ...iso.deps, store: guardedStore(createRegistryStore(sql), { end: () => sql.end({ timeout: 0 }), log: iso.deps.log }) });
      if (out.voided || out.blocksEnded || out.jobsEnded || out.retried.length) {
        iso.deps.log({ level: 'info', msg: 'trust tick', cron: event.cron, voided: out.voided, blocksEnded: out.blocksEnded, jobsEnded: out.jobsEnded, retried: out.retried.map(({ disputeId, state, asked }) => ({ disputeId, state, asked })) });
      }
    } catch (err) {
      iso.deps.log({ level: 'error', msg: 'scheduled tick failed', error: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      await sql.end({ timeout: 5 });
    }
  },
};
