/** The notifications a UI shows: newest first, each id once, with the
 * user's unread count kept in step with `read`, `read_all` and `deleted`
 * events from every device. */
import type { Notification } from "./types.js";

/** How many ids of notifications no longer held are still remembered, so a
 * late duplicate of one is not announced again. */
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

  /** Adds a live notification unless its id was seen (then only a newer
   * read state is taken from it); `counted` adds it to the unread count.
   * True when it is new. */
  add(notification: Notification, counted: boolean): boolean {
    if (this.seen.has(notification.id)) {
      if (notification.read_at !== null) this.setRead([notification.id], notification.read_at);
      return false;
    }
    this.remember(notification.id);
    this.insert(notification);
    if (this.held.length > this.keep) {
      this.held.pop();
      this.trimmed = true;
    }
    if (counted && notification.read_at === null) this.unreadCount += 1;
    return true;
  }

  /** A page of the feed, already in the count: each one not held is
   * inserted (also one trimmed earlier); returns those. */
  addPage(page: readonly Notification[]): Notification[] {
    const held = new Set(this.held.map((n) => n.id));
    const added = page.filter((n) => !held.has(n.id));
    for (const notification of added) {
      this.remember(notification.id);
      this.insert(notification);
    }
    return added;
  }

  private insert(notification: Notification): void {
    const { id } = notification;
    if (this.highest === null || id > this.highest) this.highest = id;
    let at = this.held.findIndex((n) => n.id < id);
    if (at === -1) at = this.held.length;
    this.held.splice(at, 0, notification);
  }

  /** `read`: these ids changed from unread to read on the server. The
   * count drops by those not already shown read here (held ones read
   * already were counted out before). */
  applyRead(ids: readonly number[], at: string): void {
    const known = new Map(this.held.map((n) => [n.id, n]));
    const fresh = ids.filter((id) => !known.has(id) || known.get(id)?.read_at === null).length;
    this.setRead(ids, at);
    this.unreadCount = Math.max(0, this.unreadCount - fresh);
  }

  /** Shows these held ones read, leaving the count alone. */
  setRead(ids: readonly number[], at: string): void {
    const changed = new Set(ids);
    this.held = this.held.map((n) => (changed.has(n.id) && n.read_at === null ? { ...n, read_at: at } : n));
  }

  /** `read_all`: everything up to `upTo` is read; what is unread above it
   * arrived after the request and is held. */
  applyReadAll(upTo: number, at: string): void {
    this.held = this.held.map((n) => (n.id <= upTo && n.read_at === null ? { ...n, read_at: at } : n));
    this.unreadCount = this.held.filter((n) => n.read_at === null).length;
  }

  /** `deleted`: the held ones go; false when one was not held (its read
   * state is unknown here, so the count needs asking). */
  applyDeleted(ids: readonly number[]): boolean {
    const gone = new Set(ids);
    const held = this.held.filter((n) => gone.has(n.id));
    this.held = this.held.filter((n) => !gone.has(n.id));
    this.unreadCount = Math.max(0, this.unreadCount - held.filter((n) => n.read_at === null).length);
    return held.length === ids.length;
  }

  /** Forgets what is held below `id` (a resume batch that was cut short
   * leaves a gap under it): `loadMore` fetches it again, in order. */
  dropOlderThan(id: number): void {
    const before = this.held.length;
    this.held = this.held.filter((n) => n.id >= id);
    if (this.held.length < before) this.trimmed = true;
  }

  /** A fresh copy of the newest page: held ones in its range take its read
   * state, and those missing from it were deleted meanwhile (read and
   * delete events are not replayed to a connection that was away). */
  reconcile(page: readonly Notification[]): boolean {
    const newest = page[0]?.id;
    const oldest = page.at(-1)?.id;
    if (newest === undefined || oldest === undefined) return false;
    const current = new Map(page.map((n) => [n.id, n]));
    let changed = false;
    this.held = this.held.flatMap((n) => {
      if (n.id < oldest || n.id > newest) return [n];
      const now = current.get(n.id);
      if (!now) {
        changed = true;
        return [];
      }
      if (n.read_at === null && now.read_at !== null) {
        changed = true;
        return [{ ...n, read_at: now.read_at }];
      }
      return [n];
    });
    return changed;
  }

  private remember(id: number): void {
    this.seen.add(id);
    // Pruned in steps, not at every insert: sets iterate in insertion
    // order, so the oldest ids no longer held go first.
    if (this.seen.size > REMEMBERED + this.keep + 500) {
      const heldIds = new Set(this.held.map((n) => n.id));
      for (const old of this.seen) {
        if (this.seen.size <= REMEMBERED + this.keep) break;
        if (!heldIds.has(old)) this.seen.delete(old);
      }
    }
  }
}
