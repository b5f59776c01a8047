/** Keeps a connection's outgoing frames under the gateway's frame limit
 * (`FRAME_RATE` 20/s beyond a burst of `FRAME_BURST` 40 by default; over it
 * frames are ignored, and persisting closes the socket): frames go at once
 * while the bucket has tokens, the rest wait their turn in order. A
 * reconnect that subscribes to many topics again is spread out instead of
 * refused. */
export class Pacer {
  private tokens: number;
  private refilledAt: number;
  private queue: string[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly write: (frame: string) => void,
    /** Frames per second once the burst is spent (under the server's 20). */
    private readonly perSecond = 15,
    /** Frames at once (under the server's 40). */
    private readonly burst = 30,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  send(frame: string): void {
    this.refill();
    if (this.queue.length === 0 && this.tokens >= 1) {
      this.tokens -= 1;
      this.write(frame);
      return;
    }
    this.queue.push(frame);
    this.schedule();
  }

  /** Frames waiting (for tests and diagnostics). */
  get waiting(): number {
    return this.queue.length;
  }

  /** Drops what waits (the socket is gone). */
  clear(): void {
    this.queue = [];
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
  }

  private schedule(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refill();
      while (this.queue.length > 0 && this.tokens >= 1) {
        this.tokens -= 1;
        const frame = this.queue.shift();
        if (frame !== undefined) this.write(frame);
      }
      if (this.queue.length > 0) this.schedule();
    }, 1000 / this.perSecond);
  }
}
