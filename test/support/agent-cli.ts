/**
 * The pool-agent CLI run in process (`main(args, io)`): an io that keeps the lines it printed,
 * and a fake edge owner API on a loopback port for the commands that call the edge (register).
 *
 * @example
 * const edge = await startFakeOwnerApi(async (req, send) => {
 *   if (req.method === 'GET' && req.url === '/v1/owner/pools') send(200, { object: 'list', data: [] });
 * });
 * const a = captureIo();
 * await main(['register', '--edge', edge.url, ...], a.io);
 * console.log(a.out, a.err);
 * await edge.close();
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CliIo } from '../../pool-agent/cli/args.js';

/** A CLI io whose `out` and `err` lines land in the arrays of the same names. */
export function captureIo(env: NodeJS.ProcessEnv = {}): { out: string[]; err: string[]; io: CliIo } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l) => void out.push(l), err: (l) => void err.push(l), env } };
}

export interface OwnerApiRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** The whole body, as sent. */
  body: Buffer;
}

/** Answers with JSON. */
export type SendJson = (status: number, json: unknown) => void;

export interface FakeOwnerApi {
  /** http://127.0.0.1:PORT, what `--edge` takes. */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `route` on a free loopback port. A request `route` does not answer gets the edge's 404
 * error envelope; an error `route` throws is left unhandled, so that the test fails on it.
 */
export async function startFakeOwnerApi(route: (req: OwnerApiRequest, send: SendJson) => Promise<void> | void): Promise<FakeOwnerApi> {
  const server = createServer(async (req, res) => {
    const body = await readBody(req);
    const send: SendJson = (status, json) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
    };
    await route({ method: req.method!, url: req.url!, headers: req.headers, body }, send);
    if (!res.headersSent) send(404, { error: { message: `no route ${req.method} ${req.url}`, type: 'not_found_error', code: 'not_found', param: null } });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}
