/**
 * A loopback HTTP proxy that slows an agent down on purpose: every chunk of every response is
 * held `delayMs` before it is passed on. Registered as the agent's endpoint, it makes the agent
 * look like a slow host to the edge without any test hook in the product.
 */
import { createServer, request, type Server } from 'node:http';

export interface DelayProxy {
  url: string;
  close(): Promise<void>;
}

export async function startDelayProxy(targetPort: number, delayMs: number): Promise<DelayProxy> {
  const server: Server = createServer((req, res) => {
    const upstream = request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        let chain = Promise.resolve();
        up.on('data', (chunk: Buffer) => {
          chain = chain.then(() => new Promise((r) => setTimeout(r, delayMs))).then(() => void res.write(chunk));
        });
        up.on('end', () => void chain.then(() => res.end()));
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
