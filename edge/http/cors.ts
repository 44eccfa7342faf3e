/**
 * CORS for the routes a web page calls (Hono's `cors` middleware): the inference API and the
 * public registry views the SDK's `verify` reads. API keys are bearer tokens, never cookies, so
 * the default is `Access-Control-Allow-Origin: *` without credentials (as OpenAI's API does);
 * `CORS_ORIGINS` narrows it to a list of origins. Owner, admin and agent routes get no CORS
 * headers at all: they are called by the pool-agent CLI, agents and operators' scripts, and an
 * owner or admin key has no business in a page.
 *
 * Hono's middleware writes its headers onto `c.res` before the route runs; Hono carries them
 * over to whatever response the route, `notFound` or `onError` then returns, so 401, 429 and
 * every other error are readable by the page too.
 *
 * @example
 * registerCors(app, '*');                              // any page
 * registerCors(app, ['https://chat.example.com']);     // only these origins
 */
import type { Hono } from 'hono';
import { cors } from 'hono/cors';
import type { AppEnv } from '../deps.js';

/** `*` (any origin, the default) or the exact origins (`scheme://host[:port]`) allowed. */
export type CorsOrigins = '*' | readonly string[];

/** The routes a page may call cross-origin, as Hono paths. */
export const BROWSER_ROUTES = [
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/models',
  '/v1/jobs/:id/attestation',
  '/v1/edge/keys',
  '/v1/pools',
  '/openapi.json',
  '/healthz',
] as const;

/**
 * Response headers a page may read besides the CORS-safelisted ones: the request id, the route
 * and attestation of an answer (and whether its preferred region served it), and the wait a 429 / 503 asks for (the SDK's retries honour it).
 */
export const EXPOSED_HEADERS = ['x-request-id', 'x-layernet-job-id', 'x-layernet-route', 'x-layernet-attestation', 'x-layernet-region-met', 'retry-after'] as const;

/** How long a browser may cache a preflight answer, s (Chromium caps it at 2 h). */
export const PREFLIGHT_MAX_AGE_S = 7_200;

/**
 * Mounts the CORS middleware on every browser route. Preflights are answered 204 before
 * authentication. Request headers are not narrowed: the preflight's
 * `Access-Control-Request-Headers` is echoed, so `authorization`, `content-type`, the SDK's and
 * the openai client's `x-stainless-*` headers all pass (with no cookies involved, a header list
 * would protect nothing; the origin list is the one knob).
 */
export function registerCors(app: Hono<AppEnv>, origins: CorsOrigins): void {
  const middleware = cors({
    origin: origins === '*' ? '*' : [...origins],
    allowMethods: ['GET', 'HEAD', 'POST'],
    exposeHeaders: [...EXPOSED_HEADERS],
    maxAge: PREFLIGHT_MAX_AGE_S,
    credentials: false,
  });
  for (const path of BROWSER_ROUTES) app.use(path, middleware);
}

/**
 * Parses `CORS_ORIGINS`: `*`, or origins separated by commas. Null when a member is not an
 * origin as a browser sends it (lowercase scheme and host, no path, no trailing slash).
 */
export function parseCorsOrigins(raw: string): CorsOrigins | null {
  const value = raw.trim();
  if (value === '*') return '*';
  const list = value
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '');
  if (list.length === 0 || !list.every(isOrigin)) return null;
  return list;
}

function isOrigin(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.origin === value;
  } catch {
    return false;
  }
}
