/**
 * Ticket nonces already used, kept until the ticket expires (plus clock skew), bounded in count.
 * When full, the oldest-expiring nonce is dropped only if it already expired; otherwise the new
 * ticket is refused (fail closed rather than forget a live nonce).
 *
 * @example
 * if (!nonces.claim(ticket.nonce, ticket.expiresAt)) throw new AgentError('replayed', 'nonce already used');
 */
export class NonceCache {
  private readonly expiry = new Map<string, number>();
  constructor(
    private readonly maxEntries: number,
    private readonly clock: () => number = Date.now,
    private readonly skewMs = 30_000,
  ) {}

  get size(): number {
    return this.expiry.size;
  }

  /** True when the nonce was unused (and is now claimed); false for a replay or a full cache. */
  claim(nonce: string, expiresAt: number): boolean {
    const now = this.clock();
    if (this.expiry.has(nonce)) {
      if (this.expiry.get(nonce)! + this.skewMs >= now) return false;
      this.expiry.delete(nonce);
    }
    if (this.expiry.size >= this.maxEntries) this.sweep(now);
    if (this.expiry.size >= this.maxEntries) return false;
    this.expiry.set(nonce, expiresAt);
    return true;
  }

  /** Gives a nonce back (the ticket was refused for a reason that is not its fault, e.g. capacity). */
  release(nonce: string): void {
    this.expiry.delete(nonce);
  }

  sweep(now = this.clock()): void {
    for (const [n, exp] of this.expiry) if (exp + this.skewMs < now) this.expiry.delete(n);
  }
}
