/**
 * The owner API as the CLI calls it: bearer token, a timeout, answers checked with the protocol
 * schemas, and edge errors turned into CliErrors carrying the HTTP status.
 *
 * @example
 * const edge = new EdgeClient('https://edge.example.com', token, fetch);
 * const pools = await edge.call('GET', '/v1/owner/pools', z.object({ data: z.array(poolSchema) }));
 */
import type { z } from 'zod';
import { CliError } from './args.js';

/** A raw upload may not take longer than 30 s plus this rate (the edge gives up at 256 KiB/s too). */
const MIN_UPLOAD_BYTES_PER_S = 256 * 1024;

export class EdgeClient {
  constructor(
    private readonly base: string,
    private readonly token: string,
    private readonly doFetch: (url: string, init: RequestInit) => Promise<Response>,
  ) {}

  /** A JSON call (the body, if any, is sent as JSON). */
  call<T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown): Promise<{ status: number; data: T }> {
    return this.request(method, path, schema, body === undefined ? undefined : { type: 'application/json', data: JSON.stringify(body) }, 30_000);
  }

  /** PUT of raw bytes (`application/octet-stream`), answered with JSON. */
  upload<T>(path: string, schema: z.ZodType<T>, bytes: Uint8Array): Promise<{ status: number; data: T }> {
    const timeoutMs = 30_000 + Math.ceil((bytes.byteLength / MIN_UPLOAD_BYTES_PER_S) * 1000);
    // A Blob is a BodyInit whatever buffer the view sits on.
    return this.request('PUT', path, schema, { type: 'application/octet-stream', data: new Blob([bytes as Uint8Array<ArrayBuffer>]) }, timeoutMs);
  }

  private async request<T>(method: string, path: string, schema: z.ZodType<T>, body: { type: string; data: BodyInit } | undefined, timeoutMs: number): Promise<{ status: number; data: T }> {
    let res: Response;
    try {
      res = await this.doFetch(new URL(path, this.base).toString(), {
        method,
        headers: { authorization: `Bearer ${this.token}`, accept: 'application/json', ...(body ? { 'content-type': body.type } : { 'content-type': 'application/json' }) },
        ...(body ? { body: body.data } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      // fetch's own message is only "fetch failed": the cause says why (ECONNREFUSED, ENOTFOUND, a timeout).
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message;
      throw new CliError(`cannot reach the edge: ${method} ${new URL(path, this.base).toString()}: ${(err as Error).message}${why ? ` (${why})` : ''}`, 1);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new CliError(`${method} ${path}: the edge answered ${res.status} with a non-JSON body`, 1);
    }
    if (!res.ok) {
      const msg = (json as { error?: { message?: string; code?: string } })?.error;
      throw Object.assign(new CliError(`${method} ${path} failed (${res.status}${msg?.code ? ` ${msg.code}` : ''}): ${msg?.message ?? text.slice(0, 200)}`, 1), { status: res.status });
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new CliError(`${method} ${path}: unexpected answer from the edge`, 1);
    return { status: res.status, data: parsed.data };
  }
}
