/** Topic subscriptions of one client: kept across reconnects (a new
 * connection starts with none, so each is sent again after `welcome`),
 * with events de-duplicated by id (a retained event can arrive in the
 * snapshot and live). */
import { NotifyError } from "./types.js";
import type { TopicEvent } from "./types.js";

export type TopicHandler = (event: TopicEvent) => void;

const REMEMBERED_EVENTS = 1000;
/** Topic names the gateway accepts (docs/protocol.md, Limits). */
const TOPIC_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

interface Topic {
  handlers: Set<TopicHandler>;
  /** The retained event of the last `subscribed`, for handlers added later. */
  snapshot: TopicEvent | null;
}

export class Topics {
  /** `onHandlerError`: what a throwing handler's error becomes (thrown
   * again outside the client by default, like an uncaught exception). */
  constructor(private readonly onHandlerError: (error: unknown) => void = rethrowLater) {}

  private topics = new Map<string, Topic>();
  /** `unsubscribe` frames sent and not answered yet, per topic: their
   * `unsubscribed` is not the server dropping a topic held again since. */
  private leaving = new Map<string, number>();
  private seen = new Set<string>();

  /** Adds a handler; true when the topic is new (a `subscribe` is due). A
   * handler added to a topic already held gets its snapshot at once. */
  add(topic: string, handler: TopicHandler): boolean {
    if (!TOPIC_NAME.test(topic)) {
      throw new NotifyError("invalid_topic", `not a topic name: 1-128 characters of A-Z a-z 0-9 _ . : -`);
    }
    const held = this.topics.get(topic);
    if (held) {
      held.handlers.add(handler);
      const snapshot = held.snapshot;
      if (snapshot) queueMicrotask(() => held.handlers.has(handler) && this.call(handler, snapshot));
      return false;
    }
    this.topics.set(topic, { handlers: new Set([handler]), snapshot: null });
    return true;
  }

  /** Removes a handler; true when it was the topic's last (an `unsubscribe` is due). */
  remove(topic: string, handler: TopicHandler): boolean {
    const held = this.topics.get(topic);
    if (!held?.handlers.delete(handler) || held.handlers.size > 0) return false;
    this.topics.delete(topic);
    this.leaving.set(topic, (this.leaving.get(topic) ?? 0) + 1);
    return true;
  }

  /** An `unsubscribed` frame: true when the server dropped a topic the
   * client holds (a refresh took the role that allowed it), not the answer
   * to an `unsubscribe` of the client's. */
  unsubscribed(topic: string): boolean {
    const pending = this.leaving.get(topic) ?? 0;
    if (pending > 0) {
      if (pending === 1) this.leaving.delete(topic);
      else this.leaving.set(topic, pending - 1);
      return false;
    }
    return this.topics.delete(topic);
  }

  /** A new connection: nothing is pending on it. */
  reset(): void {
    this.leaving.clear();
  }

  /** The server refused the topic for good (forbidden). */
  drop(topic: string): boolean {
    return this.topics.delete(topic);
  }

  wants(topic: string): boolean {
    return this.topics.has(topic);
  }

  get names(): string[] {
    return [...this.topics.keys()];
  }

  /** A `subscribed` frame's snapshot. */
  subscribed(topic: string, snapshot: TopicEvent | null): void {
    const held = this.topics.get(topic);
    if (!held) return;
    held.snapshot = snapshot;
    if (snapshot) this.dispatch(snapshot);
  }

  /** Gives `event` to its topic's handlers, once per event id. */
  dispatch(event: TopicEvent): boolean {
    if (!this.firstSight(event.id)) return false;
    const held = event.topic === undefined ? undefined : this.topics.get(event.topic);
    for (const handler of [...(held?.handlers ?? [])]) this.call(handler, event);
    return true;
  }

  /** A failing handler must not stop the others, nor the connection. */
  private call(handler: TopicHandler, event: TopicEvent): void {
    try {
      handler(event);
    } catch (error) {
      this.onHandlerError(error);
    }
  }

  /** True the first time an event id is seen. */
  firstSight(id: string): boolean {
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    if (this.seen.size > REMEMBERED_EVENTS) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    return true;
  }
}

function rethrowLater(error: unknown): void {
  setTimeout(() => {
    throw error;
  });
}
