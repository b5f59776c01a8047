/** The notifications a UI shows: newest first, each id once, with the
 * user's unread count kept in step with `read`, `read_all` and `deleted`
 * events from every device. */
import type { Notification } from "./types.js";

/** How many ids of notifications no longer held are still remembered, so a
 * late duplicate of one is not shown again. */
const REMEMBERED = 2000;

export class NotificationList {
  /** Newest first. */
  private held: Notification[] = [];
  private seen = new Set<number>();
  private highest: number | null = null;
  unreadCount = 0;
  /** Live growth pushed the oldest out: older ones exist beyond those held. */
  trimmed = false;

  constructor(private readonly keep: number) {}

  get items(): readonly Notification[] {
    return this.held;
  }

  /** The highest id received: what a reconnect resumes after. */
  get highestId(): number | null {
    return this.highest;
  }

  /** The lowest id held: where `loadMore` continues. */
  get oldestId(): number | null {
    return this.held.at(-1)?.id ?? null;
  }

  has(id: number): boolean {
    return this.seen.has(id);
  }

  /** Adds a notification unless its id was seen; `counted` when it is new
   * to the server's unread count the client holds (a live one), not when
   * that count already includes it (a page, a resume batch). */
  add(notification: Notification, counted: boolean): boolean {
    if (!this.insert(notification)) return false;
    // Live growth is capped; pages asked for with `loadMore` are not.
    if (this.held.length > this.keep) {
      this.held.pop();
      this.trimmed = true;
    }
    if (counted && notification.read_at === null) this.unreadCount += 1;
    return true;
  }

  /** Older notifications from the feed, already in the count. */
  addPage(page: readonly Notification[]): Notification[] {
    return page.filter((n) => this.insert(n));
  }

  private insert(notification: Notification): boolean {
    const { id } = notification;
    if (this.seen.has(id)) return false;
    this.remember(id);
    if (this.highest === null || id > this.highest) this.highest = id;
    let at = this.held.findIndex((n) => n.id < id);
    if (at === -1) at = this.held.length;
    this.held.splice(at, 0, notification);
    return true;
  }

  /** `read`: these ids changed from unread to read on the server. */
  applyRead(ids: readonly number[], at: string): void {
    const changed = new Set(ids);
    this.held = this.held.map((n) => (changed.has(n.id) && n.read_at === null ? { ...n, read_at: at } : n));
    this.unreadCount = Math.max(0, this.unreadCount - changed.size);
  }

  /** `read_all`: everything up to `upTo` is read; what is unread above it
   * arrived after the request and is held. */
  applyReadAll(upTo: number, at: string): void {
    this.held = this.held.map((n) => (n.id <= upTo && n.read_at === null ? { ...n, read_at: at } : n));
    this.unreadCount = this.held.filter((n) => n.read_at === null).length;
  }

  /** `deleted`. */
  applyDeleted(ids: readonly number[]): void {
    const gone = new Set(ids);
    const unreadGone = this.held.filter((n) => gone.has(n.id) && n.read_at === null).length;
    this.held = this.held.filter((n) => !gone.has(n.id));
    this.unreadCount = Math.max(0, this.unreadCount - unreadGone);
  }

  private remember(id: number): void {
    this.seen.add(id);
    if (this.seen.size > REMEMBERED + this.keep) {
      // Sets iterate in insertion order: forget the oldest ids no longer held.
      const heldIds = new Set(this.held.map((n) => n.id));
      for (const old of this.seen) {
        if (this.seen.size <= REMEMBERED) break;
        if (!heldIds.has(old)) this.seen.delete(old);
      }
    }
  }
}
