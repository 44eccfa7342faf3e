/**
 * What a registry outage looks like to a client: 503 with `retry-after`, soon, instead of a 500
 * (the driver's connection error reaching the error handler) or a hang (a registry that accepts
 * connections but never answers). The Workers entry wraps each request's store in this guard.
 *
 * @example
 * const store = guardedStore(createRegistryStore(sql), { end: () => sql.end({ timeout: 0 }), log });
 */
import { ApiError } from '../../protocol/errors.js';
import { isRegistryUnavailable } from '../../db/client.js';
import type { RegistryStore } from '../../db/registry-contract.js';
import { describeErrorChain } from './errors.js';

/** Seconds a client is told to wait (`retry-after`) while the registry cannot be reached. */
export const REGISTRY_RETRY_AFTER_S = 2;

/**
 * Longest one registry call may take, ms. postgres.js times out connecting (`connect_timeout`,
 * 10 s), not queries: a registry that stops answering once connected (hung, paused, a partition)
 * would otherwise hold the request forever. Generous, because the embedded registry runs one
 * query at a time and a busy one queues them.
 */
export const REGISTRY_CALL_TIMEOUT_MS = 20_000;

export interface RegistryGuardOptions {
  /** Ends the store's client (called when a call timed out: its connection is stuck, so are the calls behind it). */
  end: () => Promise<unknown>;
  log: (entry: Record<string, unknown>) => void;
  timeoutMs?: number;
}

/** The 503 a registry outage answers, with `retry-after`. */
export function registryUnavailable(): ApiError {
  return new ApiError('registry_unavailable', 'the registry is unavailable; retry shortly', null, REGISTRY_RETRY_AFTER_S);
}

/**
 * The store with outages made answers: a call that fails because the registry cannot be reached
 * or went away (`isRegistryUnavailable`: refused, reset, closed, connect timeout, shutting down),
 * or that gets no answer within `timeoutMs`, throws `registryUnavailable()` (503 `registry_unavailable` with
 * `retry-after`). Errors the registry itself answered (a conflict, a refused query) and the
 * store's own ApiErrors pass through unchanged.
 */
export function guardedStore(store: RegistryStore, options: RegistryGuardOptions): RegistryStore {
  const timeoutMs = options.timeoutMs ?? REGISTRY_CALL_TIMEOUT_MS;
  const unavailable = (method: string, cause: unknown): ApiError => {
    // Throttled (once per isolate and window, with a count): an outage fails every request.
    options.log({ level: 'error', msg: 'registry unavailable: answering 503 with retry-after', method, error: describeErrorChain(cause), throttle: 'registry_unavailable' });
    return registryUnavailable();
  };
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      const method = String(prop);
      return (...args: unknown[]) => {
        const out: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (!(out instanceof Promise)) return out;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timedOut = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            void options.end().catch(() => undefined);
            reject(unavailable(method, new Error(`no answer from the registry within ${timeoutMs} ms`)));
          }, timeoutMs);
        });
        // The race reports the first outcome; a late rejection of the call is not unhandled.
        out.catch(() => undefined);
        return Promise.race([out, timedOut]).then(
          (v) => {
            clearTimeout(timer);
            return v;
          },
          (err: unknown) => {
            clearTimeout(timer);
            if (err instanceof ApiError) throw err;
            throw isRegistryUnavailable(err) ? unavailable(method, err) : err;
          },
        );
      };
    },
  });
}
