/**
 * The outbound side of links kept between jobs: a link to a next hop whose job ended cleanly is
 * given back here and taken by the next job to the same agent (RemoteStage.connect), which then
 * skips the TCP (and TLS) handshake and the upgrade. Links the agent accepts are link-server.ts.
 *
 * @example
 * const kept = linkPool.take(url) ?? (await dialLink(url, opts));
 * // ... the job runs on it and ends cleanly (its close frame answered)
 * linkPool.give(url, kept);
 */
import type { Link } from './link.js';

/**
 * Links to next hops kept after a job ended cleanly on them, by link URL, for the next job to
 * the same agent: it then skips the TCP (and TLS) handshake and the upgrade. A link waits here at
 * most `idleMs` (well under an agent's default session idle time, after which the other side
 * closes a link that carries nothing), at most `perUrl` per URL, and keeps no process alive.
 */
export class LinkPool {
  private readonly idle = new Map<string, { link: Link; drop(): void }[]>();

  constructor(
    private readonly idleMs = 20_000,
    private readonly perUrl = 8,
  ) {}

  /** An idle link to `url` that still works, taken out of the pool, or null. */
  take(url: string): Link | null {
    const list = this.idle.get(url);
    while (list && list.length > 0) {
      const entry = list.pop()!;
      entry.drop();
      if (!entry.link.error) {
        if (list.length === 0) this.idle.delete(url);
        entry.link.keepsAlive = true;
        return entry.link;
      }
    }
    this.idle.delete(url);
    return null;
  }

  /** Keeps `link` (its job ended cleanly, nothing in flight) for a later job to `url`. */
  give(url: string, link: Link): void {
    const list = this.idle.get(url) ?? [];
    if (link.error || list.length >= this.perUrl) {
      link.close();
      return;
    }
    const remove = () => {
      const i = list.indexOf(entry);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0 && this.idle.get(url) === list) this.idle.delete(url);
    };
    // A frame nobody asked for on an idle link is a protocol error; a link that fails leaves.
    link.onUnsolicited = () => link.close();
    const unsubscribe = link.onFailed(remove);
    const timer = setTimeout(() => {
      remove();
      link.close();
    }, this.idleMs);
    timer.unref();
    const entry = {
      link,
      drop: () => {
        clearTimeout(timer);
        unsubscribe();
        link.onUnsolicited = null;
      },
    };
    link.keepsAlive = false;
    list.push(entry);
    this.idle.set(url, list);
  }

  /** Links waiting in the pool (all URLs). */
  get size(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  /** Closes every idle link (an agent shutting down). */
  closeAll(): void {
    for (const list of [...this.idle.values()]) {
      for (const entry of list.splice(0)) {
        entry.drop();
        entry.link.close();
      }
    }
    this.idle.clear();
  }
}

/** The process's pool of idle links (one agent per process; several in tests share it, by URL). */
export const linkPool = new LinkPool();
