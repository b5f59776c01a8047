/** Topic subscriptions of one client: kept across reconnects (a new
 * connection starts with none, so each is sent again after `welcome`),
 * with events de-duplicated by id (a retained event can arrive in the
 * snapshot and live). */
import type { TopicEvent } from "./types.js";

export type TopicHandler = (event: TopicEvent) => void;

const REMEMBERED_EVENTS = 1000;

export class Topics {
  private handlers = new Map<string, Set<TopicHandler>>();
  private seen = new Set<string>();

  /** Adds a handler; true when the topic is new (a `subscribe` is due). */
  add(topic: string, handler: TopicHandler): boolean {
    const set = this.handlers.get(topic);
    if (set) {
      set.add(handler);
      return false;
    }
    this.handlers.set(topic, new Set([handler]));
    return true;
  }

  /** Removes a handler; true when it was the topic's last (an `unsubscribe` is due). */
  remove(topic: string, handler: TopicHandler): boolean {
    const set = this.handlers.get(topic);
    if (!set?.delete(handler)) return false;
    if (set.size > 0) return false;
    this.handlers.delete(topic);
    return true;
  }

  /** The server dropped the topic (a refresh took the role that allowed it). */
  drop(topic: string): boolean {
    return this.handlers.delete(topic);
  }

  wants(topic: string): boolean {
    return this.handlers.has(topic);
  }

  get names(): string[] {
    return [...this.handlers.keys()];
  }

  /** Gives `event` to its topic's handlers, once per event id. */
  dispatch(event: TopicEvent): boolean {
    if (!this.firstSight(event.id)) return false;
    const set = event.topic === undefined ? undefined : this.handlers.get(event.topic);
    for (const handler of [...(set ?? [])]) handler(event);
    return true;
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
