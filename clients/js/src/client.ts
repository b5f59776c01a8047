/** NotifyClient: one user's live connection to the cluster and the state a
 * UI binds to. The rules it follows (reconnect, resume, de-duplication,
 * token refresh) are those of docs/protocol.md. */
import { Backoff, type BackoffOptions } from "./backoff.js";
import { Outbox, type SendOptions } from "./chat.js";
import { Pacer } from "./pacer.js";
import { afterClose, type Next } from "./closing.js";
import { Emitter } from "./emitter.js";
import { Api, apiBaseOf } from "./http.js";
import { NotificationList } from "./list.js";
import { Tokens, type TokenSource } from "./token.js";
import { Topics, type TopicHandler } from "./topics.js";
import { OPEN, defaultSocket, openSocket, type Refusal, type SocketConstructor, type SocketLike } from "./transport.js";
import {
  NotifyError,
  type ChatMessage,
  type Conversation,
  type Notification,
  type ServerFrame,
  type Status,
  type TopicEvent,
} from "./types.js";

export interface NotifyClientOptions {
  /** The gateways' WebSocket address, e.g. `wss://notify.example.com/ws`. */
  url: string;
  /** Returns the user's JWT; called on the first connection, before the held
   * token expires, and once after a refusal. */
  token: TokenSource;
  /** The api's address (`https://host`); by default the origin of `url`. */
  apiUrl?: string;
  /** Notifications per page of the feed (20). */
  pageSize?: number;
  /** Newest notifications kept as they arrive (100); `loadMore` adds older ones. */
  keep?: number;
  /** Acknowledge each new notification once the `notification` listeners
   * ran, so its sender sees it delivered (true). */
  ack?: boolean;
  /** Reconnect delays. */
  backoff?: BackoffOptions;
  /** Refresh the token this long before it expires (60 s). */
  refreshBeforeSecs?: number;
  /** A WebSocket implementation; the global one, or the `ws` package. */
  WebSocket?: SocketConstructor;
  /** A fetch implementation; the global one by default. */
  fetch?: typeof fetch;
}

/** The connection's session, from its `welcome`. */
export interface Session {
  id: string;
  node: string;
}

export interface StatusDetail {
  /** Why the connection was lost or the client stopped. */
  code?: string;
  /** When `offline`: the wait before the next attempt. */
  retryInMs?: number;
}

export interface NotifyEvents {
  [name: string]: unknown[];
  /** A new notification (each id once). */
  notification: [Notification];
  /** Notifications marked read, on this device or another. */
  read: [number[]];
  /** Everything up to this id was marked read. */
  read_all: [number];
  deleted: [number[]];
  status: [Status, StatusDetail];
  error: [NotifyError];
  /** Anything a UI shows changed: `notifications`, `unreadCount`, `status`. */
  change: [];
  /** A role, user-list or broadcast event (topic events go to their `subscribe` handler). */
  event: [TopicEvent];
  presence: [{ topic: string; joined?: string; left?: string }];
  message: [ChatMessage];
  "message.updated": [ChatMessage];
  "message.deleted": [ChatMessage];
  typing: [{ conversation_id: number; user_id: string }];
  messages_read: [{ conversation_id: number; user_id: string; up_to: number }];
}

/** Ids in one `read` or `ack` frame at most. */
const IDS_PER_FRAME = 1000;
/** Acks are gathered this long into one frame. */
const ACK_DELAY_MS = 100;
/** The server's `refresh` refusals (an `invalid_frame` error with one of these messages). */
const REFRESH_REFUSALS = ["the token is for another user", "invalid token", "token expired", "token revoked"];

export class NotifyClient extends Emitter<NotifyEvents> {
  private readonly options: Required<Pick<NotifyClientOptions, "pageSize" | "ack">> & NotifyClientOptions;
  private readonly tokens: Tokens;
  private readonly api: Api;
  private readonly list: NotificationList;
  private readonly backoff: Backoff;
  private readonly topics = new Topics();
  private readonly outbox = new Outbox();
  private readonly refreshBeforeSecs: number;

  private socket: SocketLike | null = null;
  /** The socket's outgoing frames, kept under the gateway's frame limit. */
  private pacer: Pacer | null = null;
  /** Bumped for every socket, so callbacks of an abandoned one are ignored. */
  private generation = 0;
  private currentStatus: Status = "stopped";
  private started = false;
  private stopped = false;
  /** A refused token was replaced by a fresh one: a second refusal stops. */
  private askedAfterRefusal = false;
  private feedLoaded = false;
  /** The highest `read_all` applied: the api's answer and its event are one change. */
  private readAllUpTo = 0;
  private hasOlder = true;
  private lastFrameAt = 0;
  private heartbeatMs = 25_000;
  private pendingAcks: number[] = [];
  private timers = new Map<"reconnect" | "refresh" | "liveness" | "ack", ReturnType<typeof setTimeout>>();
  private waiters: { resolve(): void; reject(error: NotifyError): void }[] = [];
  private readonly onBrowserOnline = () => {
    if (this.currentStatus === "offline") this.reconnectIn(0);
  };

  /** The session of the live connection, null while not online. */
  session: Session | null = null;
  /** Why the client stopped, or the last error. */
  lastError: NotifyError | null = null;

  constructor(options: NotifyClientOptions) {
    super();
    this.options = { pageSize: 20, ack: true, ...options };
    this.refreshBeforeSecs = options.refreshBeforeSecs ?? 60;
    // A held token is reused for a new connection or a request while it has
    // more than this left; the refresh replaces it before then.
    this.tokens = new Tokens(options.token, Math.min(this.refreshBeforeSecs, 30));
    const fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.api = new Api(options.apiUrl ?? apiBaseOf(options.url), async () => (await this.tokens.current()).token, fetcher);
    this.list = new NotificationList(options.keep ?? 100);
    this.backoff = new Backoff(options.backoff);
  }

  /** The notifications held, newest first. */
  get notifications(): readonly Notification[] {
    return this.list.items;
  }

  /** The user's unread notifications (all of them, not only those held). */
  get unreadCount(): number {
    return this.list.unreadCount;
  }

  get status(): Status {
    return this.currentStatus;
  }

  /** Whether `loadMore` may find older notifications. */
  get hasMore(): boolean {
    return this.hasOlder || this.list.trimmed;
  }

  /** Loads the first page of the feed, then connects and stays connected
   * until `stop()`. Resolves once the connection is up; rejects if the
   * client stops first (a refused token, a signed-out session). */
  start(): Promise<void> {
    if (this.stopped) return Promise.reject(new NotifyError("stopped", "the client was stopped", true));
    const ready = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.started) {
      this.started = true;
      const browser = globalThis as { addEventListener?: (name: string, listener: () => void) => void };
      browser.addEventListener?.("online", this.onBrowserOnline);
      this.setStatus("connecting", {});
      void this.loadFirstPage().finally(() => void this.connect());
    }
    return ready;
  }

  /** Closes the connection for good. */
  stop(): void {
    this.halt(null);
  }

  /** Marks these notifications read on every device. */
  async markRead(ids: number | readonly number[]): Promise<void> {
    const list = (typeof ids === "number" ? [ids] : [...ids]).filter((id) => Number.isSafeInteger(id) && id > 0);
    if (list.length === 0) return;
    if (this.isOpen()) {
      for (let i = 0; i < list.length; i += IDS_PER_FRAME) {
        this.send({ type: "read", ids: list.slice(i, i + IDS_PER_FRAME) });
      }
      return;
    }
    // Offline: over HTTP; the api tells every connected device.
    const changed: number[] = [];
    for (const id of list) {
      const reply = await this.api.markRead(id);
      if (reply.changed) changed.push(id);
    }
    if (changed.length > 0) this.onRead(changed);
  }

  /** Marks everything read on every device. */
  async markAllRead(): Promise<void> {
    const reply = await this.api.readAll();
    if (reply.up_to !== null) this.onReadAll(reply.up_to);
  }

  /** Deletes a notification on every device. */
  async delete(id: number): Promise<void> {
    await this.api.delete(id);
    this.onDeleted([id]);
  }

  /** Loads the next older page of the feed; false when there is none. */
  async loadMore(): Promise<boolean> {
    const page = await this.api.feed(this.options.pageSize, this.list.oldestId);
    if (this.list.addPage(page.notifications).length > 0) this.emit("change");
    this.hasOlder = page.next_cursor !== null;
    this.list.trimmed = false;
    return this.hasOlder;
  }

  /** Receives `topic`'s events (its retained snapshot first, if any) until
   * the returned function is called; kept across reconnects. */
  subscribe(topic: string, handler: TopicHandler): () => void {
    if (this.topics.add(topic, handler) && this.isOpen()) this.send({ type: "subscribe", topic });
    return () => {
      if (this.topics.remove(topic, handler) && this.isOpen()) this.send({ type: "unsubscribe", topic });
    };
  }

  /** Sends a chat message; resolves with it once stored. Sent again with
   * the same `client_id` after a reconnect, so it is stored once. */
  sendMessage(conversationId: number, body: string, options: SendOptions = {}): Promise<ChatMessage> {
    const { frame, done } = this.outbox.add(conversationId, body, options);
    if (this.isOpen()) this.pacer?.send(frame);
    return done;
  }

  /** Tells the other members this user is typing (the server forwards at most one per 2 s). */
  typing(conversationId: number): void {
    if (this.isOpen()) this.send({ type: "typing", conversation_id: conversationId });
  }

  /** Moves this user's read mark of a conversation forward. */
  async markConversationRead(conversationId: number, upTo: number): Promise<void> {
    if (this.isOpen()) {
      this.send({ type: "message.read", conversation_id: conversationId, up_to: upTo });
      return;
    }
    await this.api.call("PUT", `/api/conversations/${conversationId}/read`, { up_to: upTo });
  }

  /** The user's conversations, newest activity first. */
  conversations(limit = 20, before: string | null = null): Promise<{ conversations: Conversation[]; next_cursor: string | null }> {
    return this.api.conversations(limit, before);
  }

  /** The direct conversation with `userId` (opened if there is none). */
  async openDirect(userId: string): Promise<Conversation> {
    return (await this.api.openConversation({ type: "direct", members: [userId] })).conversation;
  }

  async openGroup(members: string[], title?: string): Promise<Conversation> {
    return (await this.api.openConversation({ type: "group", members, ...(title === undefined ? {} : { title }) })).conversation;
  }

  async conversation(id: number): Promise<Conversation> {
    return (await this.api.conversation(id)).conversation;
  }

  /** A page of a conversation's history, newest first. */
  messages(conversationId: number, limit = 50, before: number | null = null): Promise<{ messages: ChatMessage[]; next_cursor: number | null }> {
    return this.api.messages(conversationId, limit, before);
  }

  // ---- connection -------------------------------------------------------

  private async loadFirstPage(): Promise<void> {
    try {
      const page = await this.api.feed(this.options.pageSize, null);
      this.list.addPage(page.notifications);
      this.list.unreadCount = page.unread_count;
      this.hasOlder = page.next_cursor !== null;
      this.feedLoaded = true;
      this.emit("change");
    } catch (error) {
      // The socket works without the feed; it is asked again after `welcome`.
      this.report(error);
    }
  }

  private async connect(): Promise<void> {
    this.timers.delete("reconnect");
    if (this.stopped) return;
    this.setStatus("connecting", {});
    let token: string;
    let Socket: SocketConstructor;
    try {
      token = (this.askedAfterRefusal ? await this.tokens.fresh() : await this.tokens.current()).token;
      Socket = this.options.WebSocket ?? (await defaultSocket());
    } catch (error) {
      this.report(new NotifyError("token_unavailable", `the token callback failed: ${String(error)}`));
      this.reconnectIn(this.backoff.next(), "token_unavailable");
      return;
    }
    if (this.stopped) return;
    // Once the feed is loaded every later notification must arrive, so the
    // connection resumes after the highest id held (0: the feed was empty).
    const after = this.list.highestId ?? (this.feedLoaded ? 0 : null);
    const url = new URL(this.options.url);
    if (after !== null) url.searchParams.set("after", String(after));
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    this.pacer?.clear();
    const socket = openSocket(Socket, url.toString(), {
      // The token goes in the first frame, not the URL: refusals then come
      // back as close reasons, which browsers can read.
      open: () => current() && this.send({ type: "auth", token }),
      message: (text) => current() && this.onFrame(text),
      close: (code, reason, refusal) => current() && this.onClose(code, reason, refusal),
    });
    this.socket = socket;
    this.pacer = new Pacer((frame) => {
      if (socket.readyState === OPEN) socket.send(frame);
    });
  }

  private onClose(code: number, reason: string, refusal: Refusal | null): void {
    this.socket = null;
    this.pacer?.clear();
    this.pacer = null;
    this.session = null;
    this.clearTimer("liveness");
    this.clearTimer("refresh");
    if (this.stopped) return;
    const next: Next = afterClose(code, reason, refusal);
    switch (next.kind) {
      case "new_token":
        if (this.askedAfterRefusal) {
          this.halt(new NotifyError(next.code, `the server refused the token (${next.code})`, true));
          return;
        }
        this.askedAfterRefusal = true;
        this.tokens.forget();
        this.reconnectIn(0, next.code);
        return;
      case "stop":
        this.halt(new NotifyError(next.code, next.message, true));
        return;
      case "soon":
        this.reconnectIn(this.backoff.soon(), next.code);
        return;
      case "after":
        this.reconnectIn(next.ms + this.backoff.soon(), next.code);
        return;
      case "backoff":
        this.reconnectIn(this.backoff.next(), next.code);
        return;
    }
  }

  private reconnectIn(ms: number, code?: string): void {
    this.clearTimer("reconnect");
    this.setStatus("offline", { code, retryInMs: ms });
    this.timers.set(
      "reconnect",
      setTimeout(() => void this.connect(), ms),
    );
  }

  /** Drops the socket without waiting for its close (it went silent). */
  private abandon(code: string): void {
    const socket = this.socket;
    this.generation += 1;
    try {
      socket?.close(4000, code);
    } catch {
      // Already closing.
    }
    this.onClose(1006, "", null);
  }

  private halt(error: NotifyError | null): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const name of [...this.timers.keys()]) this.clearTimer(name);
    const socket = this.socket;
    this.socket = null;
    this.pacer?.clear();
    this.pacer = null;
    this.session = null;
    this.generation += 1;
    if (socket && socket.readyState <= OPEN) socket.close(1000);
    const browser = globalThis as { removeEventListener?: (name: string, listener: () => void) => void };
    browser.removeEventListener?.("online", this.onBrowserOnline);
    const why = error ?? new NotifyError("stopped", "the client was stopped", true);
    this.outbox.failAll(why);
    if (error) this.report(error);
    this.setStatus("stopped", { code: why.code });
    for (const waiter of this.waiters.splice(0)) waiter.reject(why);
  }

  // ---- frames -----------------------------------------------------------

  private onFrame(text: string): void {
    this.lastFrameAt = Date.now();
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return;
    }
    switch (frame.type) {
      case "welcome":
        return this.onWelcome(frame);
      case "notification":
        return this.onNotification(frame.notification);
      case "resumed":
        // The count of the batch's own snapshot: exact, whatever committed
        // around `welcome`; what arrives from now on is counted on top.
        if (typeof frame.unread_count === "number") this.list.unreadCount = frame.unread_count;
        this.emit("change");
        if (frame.truncated && frame.oldest_id !== null) void this.fillGap(frame.oldest_id);
        return;
      case "read":
        return this.onRead(frame.ids);
      case "read_all":
        return this.onReadAll(frame.up_to);
      case "deleted":
        return this.onDeleted(frame.ids);
      case "refreshed":
        return this.scheduleRefresh();
      case "subscribed":
        if (frame.snapshot) this.topics.dispatch(frame.snapshot);
        return;
      case "unsubscribed":
        // Not asked for: a refresh took away what allowed the topic.
        if (this.topics.drop(frame.topic)) {
          this.report(new NotifyError("forbidden", `the server unsubscribed from ${frame.topic}`));
        }
        return;
      case "event":
        if (frame.topic !== undefined) this.topics.dispatch(frame);
        else if (this.topics.firstSight(frame.id)) this.emit("event", frame);
        return;
      case "presence":
        return this.emit("presence", frame);
      case "message.sent":
        return this.outbox.sent(frame.message, frame.client_id);
      case "message":
      case "message.updated":
      case "message.deleted":
        return this.emit(frame.type, frame.message);
      case "typing":
        return this.emit("typing", { conversation_id: frame.conversation_id, user_id: frame.user_id });
      case "messages_read":
        return this.emit("messages_read", frame);
      case "error":
        return this.onError(frame);
      default:
        return;
    }
  }

  private onWelcome(frame: Extract<ServerFrame, { type: "welcome" }>): void {
    this.backoff.reset();
    this.askedAfterRefusal = false;
    this.session = { id: frame.session_id, node: frame.node };
    this.heartbeatMs = Math.max(1, frame.heartbeat_s) * 1000;
    if (frame.unread_count !== null) this.list.unreadCount = frame.unread_count;
    for (const topic of this.topics.names) this.send({ type: "subscribe", topic });
    for (const pending of this.outbox.frames) this.pacer?.send(pending);
    this.flushAcks();
    this.scheduleRefresh();
    this.watchLiveness();
    this.setStatus("online", {});
    for (const waiter of this.waiters.splice(0)) waiter.resolve();
    if (!this.feedLoaded) void this.loadFirstPage();
  }

  private onNotification(notification: Notification): void {
    // A resume also resends what was created shortly before the last id
    // held (ids can commit out of order); below the first page that is
    // older feed, for `loadMore`, not news.
    const oldest = this.list.oldestId;
    if (this.hasOlder && oldest !== null && notification.id < oldest) return;
    if (!this.list.add(notification, true)) return;
    this.emit("notification", notification);
    if (this.options.ack) this.queueAck(notification.id);
    this.emit("change");
  }

  private onRead(ids: number[]): void {
    this.list.applyRead(ids, new Date().toISOString());
    this.emit("read", ids);
    this.emit("change");
  }

  private onReadAll(upTo: number): void {
    if (upTo <= this.readAllUpTo) return;
    this.readAllUpTo = upTo;
    this.list.applyReadAll(upTo, new Date().toISOString());
    this.emit("read_all", upTo);
    this.emit("change");
  }

  private onDeleted(ids: number[]): void {
    const fresh = ids.filter((id) => this.list.items.some((n) => n.id === id));
    if (fresh.length === 0) return;
    this.list.applyDeleted(fresh);
    this.emit("deleted", fresh);
    this.emit("change");
  }

  private onError(frame: Extract<ServerFrame, { type: "error" }>): void {
    const error = new NotifyError(frame.code, frame.message);
    if (this.outbox.refused(frame.conversation_id, frame.client_id, error)) return;
    if (frame.code === "invalid_frame" && REFRESH_REFUSALS.includes(frame.message)) {
      // The connection keeps its old token until it expires; the close
      // that follows asks for a new token.
      this.report(new NotifyError("refresh_refused", `the server refused the refreshed token: ${frame.message}`));
      return;
    }
    if (frame.topic !== undefined && frame.code === "forbidden") this.topics.drop(frame.topic);
    this.report(error);
  }

  /** A resume batch was cut at 500: fetch what lies between it and what
   * was held before, over HTTP. */
  private async fillGap(oldestInBatch: number): Promise<void> {
    try {
      let before: number | null = oldestInBatch;
      while (before !== null) {
        const page = await this.api.feed(100, before);
        const added = this.list.addPage(page.notifications);
        for (const n of added) this.emit("notification", n);
        if (added.length > 0) this.emit("change");
        // Stop at the first notification already held: the rest are older.
        if (added.length < page.notifications.length) break;
        before = page.next_cursor;
      }
    } catch (error) {
      this.report(error);
    }
  }

  // ---- timers -----------------------------------------------------------

  private scheduleRefresh(): void {
    this.clearTimer("refresh");
    const inMs = this.tokens.refreshInMs();
    if (inMs === null) return;
    this.timers.set(
      "refresh",
      setTimeout(() => void this.refresh(), inMs),
    );
  }

  private async refresh(): Promise<void> {
    this.timers.delete("refresh");
    try {
      const before = this.tokens.refreshInMs();
      const held = await this.tokens.fresh();
      if (!this.isOpen()) return;
      if (held.expiresAt !== null && before !== null && (this.tokens.refreshInMs() ?? 0) <= before) {
        // The callback gave no newer token: ask again in a while.
        this.timers.set("refresh", setTimeout(() => void this.refresh(), 10_000));
        return;
      }
      this.send({ type: "refresh", token: held.token });
    } catch (error) {
      this.report(new NotifyError("token_unavailable", `the token callback failed: ${String(error)}`));
      this.timers.set("refresh", setTimeout(() => void this.refresh(), 10_000));
    }
  }

  /** Browsers answer the server's pings but cannot see them: the client
   * pings itself when the socket is quiet, and gives up on one silent for
   * two heartbeats (a dead network drops no close frame). */
  private watchLiveness(): void {
    this.clearTimer("liveness");
    this.lastFrameAt = Date.now();
    const tick = () => {
      const quiet = Date.now() - this.lastFrameAt;
      if (quiet > 2 * this.heartbeatMs + 5000) {
        this.abandon("heartbeat_timeout");
        return;
      }
      if (quiet >= this.heartbeatMs) this.send({ type: "ping" });
      this.timers.set("liveness", setTimeout(tick, this.heartbeatMs / 2));
    };
    this.timers.set("liveness", setTimeout(tick, this.heartbeatMs / 2));
  }

  private queueAck(id: number): void {
    this.pendingAcks.push(id);
    if (!this.timers.has("ack")) {
      this.timers.set(
        "ack",
        setTimeout(() => {
          this.timers.delete("ack");
          this.flushAcks();
        }, ACK_DELAY_MS),
      );
    }
  }

  private flushAcks(): void {
    if (!this.isOpen()) return; // kept for the next connection
    const ids = this.pendingAcks.splice(0);
    for (let i = 0; i < ids.length; i += IDS_PER_FRAME) {
      this.send({ type: "ack", ids: ids.slice(i, i + IDS_PER_FRAME) });
    }
  }

  // ---- helpers ----------------------------------------------------------

  private isOpen(): boolean {
    return this.currentStatus === "online" && this.socket !== null && this.socket.readyState === OPEN;
  }

  private send(frame: object): void {
    if (this.socket && this.socket.readyState === OPEN) this.pacer?.send(JSON.stringify(frame));
  }

  private setStatus(status: Status, detail: StatusDetail): void {
    const changed = status !== this.currentStatus;
    this.currentStatus = status;
    this.emit("status", status, detail);
    if (changed) this.emit("change");
  }

  private report(error: unknown): void {
    const notifyError = error instanceof NotifyError ? error : new NotifyError("internal_error", String(error));
    this.lastError = notifyError;
    this.emit("error", notifyError);
  }

  private clearTimer(name: "reconnect" | "refresh" | "liveness" | "ack"): void {
    const timer = this.timers.get(name);
    if (timer !== undefined) clearTimeout(timer);
    this.timers.delete(name);
  }
}
