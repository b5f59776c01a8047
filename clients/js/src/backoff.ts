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

  /** A short random delay, under a second, for "reconnect elsewhere at
   * once" (a draining or full node): the node's clients spread out. */
  soon(): number {
    return Math.floor(this.random() * Math.min(1000, this.maxMs));
  }

  /** After a connection was established. */
  reset(): void {
    this.attempt = 0;
  }
}
