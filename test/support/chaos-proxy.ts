/**
 * A bad network link, as a loopback TCP proxy in front of a hop (registered as the agent's
 * endpoint, like the other proxies here): it passes bytes through unchanged, in both directions,
 * for every connection (requests, streamed answers, upgraded links and taps alike), and a test
 * turns faults on and off while traffic flows:
 *
 * - `delayMs`: every chunk, in each direction, is held that long before it is passed on (order
 *   kept): a slow link. Applies to chunks that arrive after it is set.
 * - `cut()`: resets every open connection now (both sides destroyed): a link that drops mid-job.
 * - `refuse`: new connections are closed at once (a link that stays down) until it is false.
 * - `cutAfter(text)`: resets the first connection whose answer (target to client) carries `text`,
 *   right after passing that chunk on: e.g. `'"type":"chunk"'` drops a job's stream after its
 *   first verified tokens left the agent, without the test having to watch the client side.
 *
 * It counts connections and cuts, so a test can tell its fault was really on the path.
 *
 * @example
 * const link = await startChaosProxy(agentPort);          // register link.url as the endpoint
 * link.delayMs = 200;                                     // slow from now on
 * link.cut();                                             // drop what is open
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface ChaosProxy {
  url: string;
  port: number;
  /** Added latency per chunk and direction, ms (0: none). */
  delayMs: number;
  /** Close new connections at once. */
  refuse: boolean;
  /** Connections accepted so far (refused ones included). */
  readonly connections: number;
  /** Connections open now. */
  readonly open: number;
  /** Connections `cut()` has reset. */
  readonly cuts: number;
  /** Resets every open connection; returns how many there were. */
  cut(): number;
  /** Resets the first connection whose answer carries `text` once that chunk is passed on; resolves then. */
  cutAfter(text: string): Promise<void>;
  close(): Promise<void>;
}

export async function startChaosProxy(targetPort: number, options: { delayMs?: number } = {}): Promise<ChaosProxy> {
  const pairs = new Set<{ client: Socket; target: Socket }>();
  let connections = 0;
  let cuts = 0;
  const state = { delayMs: options.delayMs ?? 0, refuse: false };
  let trap: { text: string; fired: () => void } | null = null;

  const reset = (pair: { client: Socket; target: Socket }) => {
    // A reset, not a polite FIN: what a dropped link looks like to both ends.
    for (const socket of [pair.client, pair.target]) if (!socket.destroyed) socket.resetAndDestroy();
    pairs.delete(pair);
    cuts++;
  };

  /** Passes `from`'s bytes to `to`, each chunk held `state.delayMs`, in order. */
  const relay = (from: Socket, to: Socket, pair: { client: Socket; target: Socket } | null) => {
    let chain = Promise.resolve();
    const pass = (chunk: Buffer) => {
      if (to.destroyed) return;
      to.write(chunk);
      if (pair && trap && chunk.includes(trap.text)) {
        const { fired } = trap;
        trap = null;
        // Once the chunk is on its way: the other end gets it, then the reset.
        setImmediate(() => {
          reset(pair);
          fired();
        });
      }
    };
    from.on('data', (chunk: Buffer) => {
      const delay = state.delayMs;
      if (delay <= 0) {
        chain = chain.then(() => pass(chunk));
        return;
      }
      const due = Date.now() + delay;
      // Each chunk leaves `delay` after it came, and never before the one ahead of it.
      chain = chain.then(() => new Promise<void>((r) => setTimeout(r, Math.max(0, due - Date.now())))).then(() => pass(chunk));
    });
    from.on('end', () => void chain.then(() => to.end()));
  };

  const server: Server = createServer((client) => {
    connections++;
    client.on('error', () => undefined);
    if (state.refuse) {
      client.destroy();
      return;
    }
    const target = connect(targetPort, '127.0.0.1');
    target.on('error', () => undefined);
    const pair = { client, target };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      target.destroy();
    };
    client.on('close', drop);
    target.on('close', drop);
    relay(client, target, null);
    relay(target, client, pair);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      state.delayMs = ms;
    },
    get refuse() {
      return state.refuse;
    },
    set refuse(on: boolean) {
      state.refuse = on;
    },
    get connections() {
      return connections;
    },
    get open() {
      return pairs.size;
    },
    get cuts() {
      return cuts;
    },
    cut() {
      const n = pairs.size;
      for (const pair of [...pairs]) reset(pair);
      return n;
    },
    cutAfter(text: string) {
      return new Promise<void>((fired) => {
        trap = { text, fired };
      });
    },
    close: () =>
      new Promise<void>((r) => {
        for (const { client, target } of pairs) {
          client.destroy();
          target.destroy();
        }
        pairs.clear();
        server.close(() => r());
      }),
  };
}
