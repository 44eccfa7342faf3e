/**
 * Serializes several Postgres wire-protocol connections onto PGlite's single backend, one
 * *session turn* at a time.
 *
 * Why not pglite-socket's own queue: it interleaves connections message by message and only
 * keeps a connection exclusive inside an explicit BEGIN. postgres.js sends every parameterized
 * query as Parse/Bind/Describe/Execute/Sync on the unnamed statement and portal, so two
 * clients' messages interleaved mean one client executes the other's statement (seen with
 * 400 concurrent queries from two postgres.js clients: 100 wrong results). Here a connection
 * owns the backend from its first message until the backend answers ReadyForQuery with status
 * 'I' (idle: the Sync of an extended query, or COMMIT/ROLLBACK of a transaction); messages of
 * other connections wait in order.
 *
 * Consequence: a connection that holds a transaction open blocks every other connection until
 * it ends (real Postgres would only block on row locks). Keep embedded transactions short and
 * never wait on another connection inside one.
 *
 * Duck-types pglite-socket's internal `QueryQueueManager` (the `queryQueue` option of the
 * exported `PGLiteSocketHandler`).
 */
import type { PGlite } from '@electric-sql/pglite';

interface Item {
  handlerId: number;
  message: Uint8Array;
  onData: (data: Uint8Array) => void;
  resolve: (bytes: number) => void;
  reject: (err: unknown) => void;
  /** Internal turn run instead of a message (connection cleanup). */
  cleanup?: () => Promise<void>;
}

const READY_FOR_QUERY = 0x5a; // 'Z'
const IDLE = 0x49; // 'I'
const PARSE = 0x50; // 'P'
const TERMINATE = 0x58; // 'X'

export class PGliteSessionQueue {
  private queue: Item[] = [];
  private processing = false;
  /** The connection in the middle of a query or transaction, or null when the backend is idle. */
  private owner: number | null = null;
  /** Named prepared statements per connection, closed when it disconnects (the backend is shared). */
  private statements = new Map<number, Set<string>>();

  constructor(private readonly db: PGlite) {}

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queue.push({ handlerId, message, onData, resolve, reject });
      void this.process();
    });
  }

  getQueueLength(): number {
    return this.queue.length;
  }

  clearQueueForHandler(handlerId: number): void {
    this.queue = this.queue.filter((item) => {
      if (item.handlerId !== handlerId) return true;
      item.reject(new Error('connection closed'));
      return false;
    });
  }

  /**
   * Called when a connection goes away: queues the cleanup of what it left in the shared
   * backend (a half-sent extended query, an open transaction, named statements). It runs as
   * that connection's last turn, so it never cuts into another connection's turn.
   */
  clearTransactionIfNeeded(handlerId: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const cleanup = async () => {
        const names = this.statements.get(handlerId);
        this.statements.delete(handlerId);
        await this.discard(concat([sync(), ...[...(names ?? [])].map(closeStatement), sync()]));
        // Raw protocol only: `exec` takes the mutex this turn already holds.
        if (this.db.isInTransaction()) await this.discard(simpleQuery('ROLLBACK'));
      };
      this.queue.push({ handlerId, message: new Uint8Array(0), onData: () => undefined, resolve: () => resolve(), reject, cleanup });
      void this.process();
    });
  }

  /**
   * Runs protocol messages whose answers nobody reads. Not `execProtocolRaw`: PGlite keeps the
   * last `execProtocolRawStream` callback installed, so a plain call would write its answers
   * (ReadyForQuery included) into the previous connection's socket and desynchronize it.
   */
  private discard(message: Uint8Array): Promise<void> {
    return this.db.execProtocolRawStream(message, { onRawData: () => undefined });
  }

  private next(): Item | undefined {
    if (this.owner === null) return this.queue.shift();
    const i = this.queue.findIndex((item) => item.handlerId === this.owner);
    return i === -1 ? undefined : this.queue.splice(i, 1)[0];
  }

  private async process(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      for (let item = this.next(); item; item = this.next()) {
        const { handlerId, message } = item;
        if (item.cleanup) {
          try {
            await this.db.runExclusive(item.cleanup);
            item.resolve(0);
          } catch (err) {
            item.reject(err);
          }
          this.owner = null;
          continue;
        }
        this.owner = handlerId;
        if (message[0] === PARSE) this.trackStatement(handlerId, message);
        const tail = new Uint8Array(6);
        let bytes = 0;
        try {
          await this.db.runExclusive(() =>
            this.db.execProtocolRawStream(message, {
              onRawData: (data) => {
                bytes += data.length;
                keepTail(tail, data);
                item.onData(data);
              },
            }),
          );
        } catch (err) {
          this.owner = null;
          item.reject(err);
          continue;
        }
        const idle = tail[0] === READY_FOR_QUERY && tail[1] === 0 && tail[2] === 0 && tail[3] === 0 && tail[4] === 5 && tail[5] === IDLE;
        if (idle || message[0] === TERMINATE) this.owner = null;
        item.resolve(bytes);
      }
    } finally {
      this.processing = false;
    }
  }

  private trackStatement(handlerId: number, message: Uint8Array): void {
    // Parse: 'P', int32 length, statement name (C string), ...
    let end = 5;
    while (end < message.length && message[end] !== 0) end++;
    if (end === 5) return; // the unnamed statement needs no cleanup
    const name = new TextDecoder().decode(message.subarray(5, end));
    let set = this.statements.get(handlerId);
    if (!set) this.statements.set(handlerId, (set = new Set()));
    set.add(name);
  }
}

/** Keeps the last 6 bytes seen across chunks (a ReadyForQuery message is 6 bytes). */
function keepTail(tail: Uint8Array, data: Uint8Array): void {
  if (data.length >= 6) {
    tail.set(data.subarray(data.length - 6));
    return;
  }
  tail.copyWithin(0, data.length);
  tail.set(data, 6 - data.length);
}

function sync(): Uint8Array {
  return new Uint8Array([0x53, 0, 0, 0, 4]);
}

function simpleQuery(text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(1 + 4 + bytes.length + 1);
  out[0] = 0x51;
  new DataView(out.buffer).setInt32(1, out.length - 1);
  out.set(bytes, 5);
  return out;
}

/** Close ('C') of a named prepared statement ('S'). */
function closeStatement(name: string): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  const out = new Uint8Array(1 + 4 + 1 + bytes.length + 1);
  const view = new DataView(out.buffer);
  out[0] = 0x43;
  view.setInt32(1, out.length - 1);
  out[5] = 0x53;
  out.set(bytes, 6);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
