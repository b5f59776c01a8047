/** Reconnect delays: exponential backoff with full jitter (a random delay
 * between 0 and `initialMs * 2^attempt`, capped at `maxMs`), so clients that
 * lost the same node do not come back in one wave. */
export interface BackoffOptions {
  /** Upper bound of the first delay (500 ms). */
  initialMs?: number;
  /** Upper bound of any delay (30 s). */
  maxMs?: number;
}

export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;

  constructor(options: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.initialMs = options.initialMs ?? 500;
    this.maxMs = options.maxMs ?? 30_000;
  }

  /** The delay before the next attempt; each call widens the next one. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.floor(this.random() * ceiling);
  }

  /** "Reconnect elsewhere at once" (a draining or full node): a random
   * delay under a second the first time, so the node's clients spread out;
   * if that keeps happening (the whole pool is full), the usual backoff. */
  soon(): number {
    if (this.attempt > 0) return this.next();
    this.attempt = 1;
    return Math.floor(this.random() * Math.min(1000, this.maxMs));
  }

  /** After a connection stayed up for a while. */
  reset(): void {
    this.attempt = 0;
  }
}
