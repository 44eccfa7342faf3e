/**
 * A loopback proxy in front of an agent that passes everything through unchanged (requests,
 * streamed answers, upgraded links and taps) and records, for the paths it is asked to watch,
 * what each exchange cost: request and answer bytes and time to the answer's last byte.
 * Registered as the agent's endpoint, it measures what the edge asks of the agent (e.g. its
 * disclosures for per-hop blame, `POST /v1/checks/inputs`) without a hook in the product.
 *
 * @example
 * const proxy = await startMeteringProxy(port, ['/v1/checks/inputs']);
 * // ... register http://127.0.0.1:<proxy port> as the agent's endpoint, run jobs and checks ...
 * proxy.exchanges; // [{ path: '/v1/checks/inputs', status: 200, requestBytes: 180, responseBytes: 24_311, ms: 4.2, at }]
 */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface MeteredExchange {
  path: string;
  status: number;
  requestBytes: number;
  responseBytes: number;
  /** From the request's arrival to the answer's last byte, ms. */
  ms: number;
  /** Date.now() when the request arrived. */
  at: number;
}

export interface MeteringProxy {
  url: string;
  port: number;
  /** Watched exchanges, in the order they ended. */
  readonly exchanges: MeteredExchange[];
  close(): Promise<void>;
}

/** The request head as it came, for an upgrade passed through at the socket level. */
function rawHead(req: IncomingMessage): string {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  return lines.join('\r\n') + '\r\n\r\n';
}

export async function startMeteringProxy(targetPort: number, watch: readonly string[]): Promise<MeteringProxy> {
  const exchanges: MeteredExchange[] = [];
  const sockets = new Set<Socket | Duplex>();
  const server: Server = createServer((req, res) => {
    const at = Date.now();
    const started = performance.now();
    const path = (req.url ?? '').split('?')[0]!;
    let requestBytes = 0;
    let responseBytes = 0;
    req.on('data', (c: Buffer) => void (requestBytes += c.length));
    const upstream = request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.on('data', (c: Buffer) => void (responseBytes += c.length));
      up.pipe(res);
      up.on('end', () => {
        if (watch.includes(path)) exchanges.push({ path, status: up.statusCode ?? 0, requestBytes, responseBytes, ms: performance.now() - started, at });
      });
      up.on('error', () => res.destroy());
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  // Links and taps: the upgrade request and everything after it, byte for byte.
  server.on('upgrade', (req: IncomingMessage, client: Duplex, head: Buffer) => {
    const target = connect(targetPort, '127.0.0.1', () => {
      target.write(rawHead(req));
      if (head.length) target.write(head);
      client.pipe(target);
      target.pipe(client);
    });
    for (const s of [client, target]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    target.on('error', () => client.destroy());
    client.on('error', () => target.destroy());
    target.on('close', () => client.destroy());
    client.on('close', () => target.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    exchanges,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
