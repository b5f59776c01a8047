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
import { Tokens, type HeldToken, type TokenSource } from "./token.js";
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

type TimerName =
  | "reconnect"
  | "refresh"
  | "liveness"
  | "ack"
  | "handshake"
  | "stable"
  | "resume"
  /** A chat message sent again, a subscribe asked again. */
  | `chat:${string}`
  | `topic:${string}`;

/** Ids in one `read` or `ack` frame at most. */
const IDS_PER_FRAME = 1000;
/** Acks are gathered this long into one frame. */
const ACK_DELAY_MS = 100;
/** From opening a socket to `welcome`, at most. */
const HANDSHAKE_MS = 15_000;
/** A connection up this long resets the reconnect backoff (one that fails
 * right after `welcome`, every time, keeps backing off). */
const STABLE_MS = 10_000;
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
  /** The user of the first token (`sub`): every later token must be theirs. */
  private user: string | null = null;
  /** A refused token was replaced by a fresh one: a second refusal stops. */
  private askedAfterRefusal = false;
  private feedLoaded = false;
  /** The highest `read_all` applied: the api's answer and its event are one change. */
  private readAllUpTo = 0;
  private hasOlder = true;
  private lastFrameAt = 0;
  private heartbeatMs = 25_000;
  /** A ping sent on a quiet socket and not answered by any frame yet (ms). */
  private pingSentAt = 0;
  /** Where this connection's catch-up started: what to resume from if the
   * server gives up on it. */
  private resumeFrom: number | null = null;
  /** Connections after the first reconcile held read and delete state. */
  private connections = 0;
  private catchupRetryMs = 5000;
  private pendingAcks: number[] = [];
  private timers = new Map<TimerName, ReturnType<typeof setTimeout>>();
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
    // more than a few seconds left; the refresh replaces it well before.
    this.tokens = new Tokens(options.token, Math.min(this.refreshBeforeSecs / 2, 10), this.refreshBeforeSecs);
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
    if (this.currentStatus === "online") return Promise.resolve();
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
    // Offline: over HTTP; the api tells every connected device, and each
    // answer carries the count.
    const at = new Date().toISOString();
    for (const id of list) {
      const reply = await this.api.markRead(id);
      this.list.setRead([id], at);
      this.list.unreadCount = reply.unread_count;
      this.emit("change");
    }
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
    const added = this.list.addPage(page.notifications);
    this.ackAll(added);
    if (added.length > 0) this.emit("change");
    this.hasOlder = page.next_cursor !== null;
    this.list.trimmed = false;
    return this.hasOlder;
  }

  /** Receives `topic`'s events (its retained snapshot first, if any) until
   * the returned function is called; kept across reconnects. */
  subscribe(topic: string, handler: TopicHandler): () => void {
    // Throws `invalid_topic` for a name the gateway would refuse.
    if (this.topics.add(topic, handler) && this.isOpen()) this.send({ type: "subscribe", topic });
    return () => {
      if (this.topics.remove(topic, handler) && this.isOpen()) this.send({ type: "unsubscribe", topic });
    };
  }

  /** Sends a chat message; resolves with it once stored. Sent again with
   * the same `client_id` after a reconnect, so it is stored once. */
  sendMessage(conversationId: number, body: string, options: SendOptions = {}): Promise<ChatMessage> {
    if (this.stopped) return Promise.reject(new NotifyError("stopped", "the client was stopped", true, options.clientId));
    if (!Number.isSafeInteger(conversationId) || conversationId <= 0) {
      return Promise.reject(new NotifyError("conversation_not_found", "not a conversation id", false, options.clientId));
    }
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
      if (this.stopped) return;
      this.ackAll(this.list.addPage(page.notifications));
      // Late (after a `welcome`), the page's count is older than the one
      // the connection keeps.
      if (this.connections === 0) this.list.unreadCount = page.unread_count;
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
    let held: HeldToken;
    let Socket: SocketConstructor;
    try {
      held = this.askedAfterRefusal ? await this.tokens.fresh() : await this.tokens.current();
    } catch (error) {
      if (this.stopped) return;
      this.report(new NotifyError("token_unavailable", `the token callback failed: ${String(error)}`));
      this.reconnectIn(this.backoff.next(), "token_unavailable");
      return;
    }
    try {
      Socket = this.options.WebSocket ?? (await defaultSocket());
    } catch (error) {
      this.halt(new NotifyError("no_websocket", String(error), true));
      return;
    }
    if (this.stopped) return;
    if (!this.sameUser(held)) return;
    // Once the feed is loaded every later notification must arrive, so the
    // connection resumes after the highest id held (0: the feed was empty).
    const after = this.list.highestId ?? (this.feedLoaded ? 0 : null);
    this.resumeFrom = after;
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    this.pacer?.clear();
    this.topics.reset();
    let socket: SocketLike;
    try {
      const url = new URL(this.options.url);
      if (after !== null) url.searchParams.set("after", String(after));
      socket = openSocket(Socket, url.toString(), {
        // The token goes in the first frame, not the URL: refusals then
        // come back as close reasons, which browsers can read.
        open: () => current() && this.send({ type: "auth", token: held.token }),
        message: (text) => current() && this.onFrame(text),
        close: (code, reason, refusal) => current() && this.onClose(code, reason, refusal),
      });
    } catch (error) {
      // A malformed url, or a page that may not open it (mixed content).
      this.halt(new NotifyError("invalid_url", `cannot open ${this.options.url}: ${String(error)}`, true));
      return;
    }
    this.socket = socket;
    this.pacer = new Pacer((frame) => {
      if (socket.readyState === OPEN) socket.send(frame);
    });
    // A connect that hangs (a black-holed network, a stuck handshake) is
    // given up like a silent socket.
    this.setTimer("handshake", HANDSHAKE_MS, () => this.abandon("handshake_timeout"));
  }

  /** The token callback must keep to one user: the list, the resume point
   * and the topics are that user's. */
  private sameUser(held: HeldToken): boolean {
    if (held.subject === null) return true;
    this.user ??= held.subject;
    if (held.subject === this.user) return true;
    this.halt(new NotifyError("user_changed", `the token callback gave a token of another user (${held.subject}); start a new client`, true));
    return false;
  }

  private onClose(code: number, reason: string, refusal: Refusal | null): void {
    this.socket = null;
    this.pacer?.clear();
    this.pacer = null;
    this.session = null;
    for (const name of ["liveness", "refresh", "handshake", "stable", "resume"] as const) this.clearTimer(name);
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
    this.setStatus("offline", { code, retryInMs: ms });
    this.setTimer("reconnect", ms, () => void this.connect());
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
    this.onClose(4000, code, null);
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
        return this.onResumed(frame);
      case "read":
        return this.onRead(frame.ids);
      case "read_all":
        return this.onReadAll(frame.up_to);
      case "deleted":
        return this.onDeleted(frame.ids);
      case "refreshed":
        return this.scheduleRefresh();
      case "subscribed":
        return this.topics.subscribed(frame.topic, frame.snapshot);
      case "unsubscribed":
        // Not the answer to an `unsubscribe`: a refresh took away what
        // allowed the topic.
        if (this.topics.unsubscribed(frame.topic)) {
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
    this.clearTimer("handshake");
    this.askedAfterRefusal = false;
    this.connections += 1;
    this.session = { id: frame.session_id, node: frame.node };
    this.heartbeatMs = Math.max(1, frame.heartbeat_s) * 1000;
    if (frame.unread_count !== null) this.list.unreadCount = frame.unread_count;
    this.setStatus("online", {});
    for (const topic of this.topics.names) this.send({ type: "subscribe", topic });
    for (const pending of this.outbox.frames) this.pacer?.send(pending);
    this.flushAcks();
    this.scheduleRefresh();
    this.watchLiveness();
    this.setTimer("stable", STABLE_MS, () => this.backoff.reset());
    for (const waiter of this.waiters.splice(0)) waiter.resolve();
    if (!this.feedLoaded) void this.loadFirstPage();
  }

  private onResumed(frame: Extract<ServerFrame, { type: "resumed" }>): void {
    this.clearTimer("resume");
    this.catchupRetryMs = 5000;
    this.resumeFrom = this.list.highestId ?? this.resumeFrom;
    // The count of the batch's own snapshot: exact, whatever committed
    // around `welcome`; what arrives from now on is counted on top.
    if (typeof frame.unread_count === "number") this.list.unreadCount = frame.unread_count;
    // Cut short: what lies between the batch and what was held before is
    // left to `loadMore`, which pages down from the batch without a gap.
    if (frame.truncated && frame.oldest_id !== null) this.list.dropOlderThan(frame.oldest_id);
    this.emit("change");
    // Reads and deletions made elsewhere while this device was away are
    // not replayed: take them from a fresh copy of the newest page.
    if (this.connections > 1 && this.feedLoaded) void this.reconcile();
  }

  private async reconcile(): Promise<void> {
    try {
      const held = Math.min(this.list.items.length, 100);
      if (held === 0) return;
      const page = await this.api.feed(held, null);
      if (this.list.reconcile(page.notifications)) this.emit("change");
    } catch (error) {
      this.report(error);
    }
  }

  private onNotification(notification: Notification): void {
    // A resume also resends what was created shortly before the last id
    // held (ids can commit out of order); below the first page that is
    // older feed, for `loadMore`, not news.
    const oldest = this.list.oldestId;
    if (this.feedLoaded && this.hasMore && oldest !== null && notification.id < oldest) return;
    if (!this.list.add(notification, true)) {
      // A copy of one held: it may say it was read meanwhile.
      if (notification.read_at !== null) this.emit("change");
      return;
    }
    this.emit("notification", notification);
    this.queueAck(notification.id);
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
    const gone = ids.filter((id) => this.list.items.some((n) => n.id === id));
    if (gone.length < ids.length) void this.recount();
    if (gone.length === 0) return;
    this.list.applyDeleted(gone);
    this.emit("deleted", gone);
    this.emit("change");
  }

  /** A deletion of one not held: whether it was unread is known only to the api. */
  private async recount(): Promise<void> {
    try {
      const reply = await this.api.call<{ unread_count: number }>("GET", "/api/notifications/unread-count");
      this.list.unreadCount = reply.unread_count;
      this.emit("change");
    } catch (error) {
      this.report(error);
    }
  }

  private onError(frame: Extract<ServerFrame, { type: "error" }>): void {
    const error = new NotifyError(frame.code, frame.message);
    const refusal = this.outbox.refused(frame.conversation_id, frame.client_id, error);
    if (refusal.kind === "retry") {
      this.setTimer(`chat:${frame.client_id}`, refusal.delayMs, () => {
        if (this.isOpen()) this.pacer?.send(refusal.frame);
      });
      return;
    }
    if (refusal.kind === "rejected") return;
    if (frame.code === "invalid_frame" && REFRESH_REFUSALS.includes(frame.message)) {
      // The connection keeps its old token until it expires; the close
      // that follows asks for a new token.
      this.report(new NotifyError("refresh_refused", `the server refused the refreshed token: ${frame.message}`));
      return;
    }
    if (frame.topic !== undefined) {
      if (frame.code === "forbidden" || frame.code === "invalid_topic") this.topics.drop(frame.topic);
      if (frame.code === "unavailable" && this.topics.wants(frame.topic)) {
        // Nothing changed on the server: ask again in a while.
        const topic = frame.topic;
        this.setTimer(`topic:${topic}`, 2000, () => {
          if (this.isOpen() && this.topics.wants(topic)) this.send({ type: "subscribe", topic });
        });
      }
    } else if (frame.code === "unavailable" && frame.conversation_id === undefined) {
      // A catch-up the node gave up on (or a read or an ack MySQL did not
      // take): resume from where this connection's catch-up began, so
      // nothing published meanwhile stays missing.
      this.scheduleResume();
    }
    this.report(error);
  }

  private scheduleResume(): void {
    if (this.timers.has("resume")) return;
    const delay = this.catchupRetryMs;
    this.catchupRetryMs = Math.min(this.catchupRetryMs * 2, 60_000);
    this.setTimer("resume", delay, () => {
      if (this.isOpen() && this.resumeFrom !== null) this.send({ type: "resume", after: this.resumeFrom });
    });
  }

  // ---- timers -----------------------------------------------------------

  private scheduleRefresh(): void {
    const inMs = this.tokens.refreshInMs();
    if (inMs === null) {
      this.clearTimer("refresh");
      return;
    }
    this.setTimer("refresh", inMs, () => void this.refresh());
  }

  private async refresh(): Promise<void> {
    const generation = this.generation;
    const before = this.tokens.refreshInMs();
    let held: HeldToken;
    try {
      held = await this.tokens.fresh();
    } catch (error) {
      if (this.stopped || generation !== this.generation) return;
      this.report(new NotifyError("token_unavailable", `the token callback failed: ${String(error)}`));
      this.setTimer("refresh", 10_000, () => void this.refresh());
      return;
    }
    // Stopped or reconnected meanwhile: the new connection has its own.
    if (this.stopped || generation !== this.generation || !this.isOpen()) return;
    if (!this.sameUser(held)) return;
    if (before !== null && (this.tokens.refreshInMs() ?? 0) <= before) {
      // The callback gave no newer token: ask again in a while.
      this.setTimer("refresh", 10_000, () => void this.refresh());
      return;
    }
    this.send({ type: "refresh", token: held.token });
  }

  /** Browsers answer the server's pings but cannot see them: the client
   * pings itself when the socket is quiet, and gives up on a socket that
   * answers nothing within a heartbeat (plus 5 s) of such a ping. Hidden
   * tabs run timers late: a late tick pings first, it never gives up at
   * once. */
  private watchLiveness(): void {
    this.lastFrameAt = Date.now();
    this.pingSentAt = 0;
    const tick = () => {
      const now = Date.now();
      const waiting = this.pingSentAt > this.lastFrameAt;
      if (waiting && now - this.pingSentAt > this.heartbeatMs + 5000) {
        this.abandon("heartbeat_timeout");
        return;
      }
      if (!waiting && now - this.lastFrameAt >= this.heartbeatMs) {
        this.pingSentAt = now;
        this.send({ type: "ping" });
      }
      this.setTimer("liveness", this.heartbeatMs / 2, tick);
    };
    this.setTimer("liveness", this.heartbeatMs / 2, tick);
  }

  private queueAck(id: number): void {
    if (!this.options.ack) return;
    this.pendingAcks.push(id);
    if (!this.timers.has("ack")) this.setTimer("ack", ACK_DELAY_MS, () => this.flushAcks());
  }

  /** Feed pages are delivered too: their senders see them delivered. */
  private ackAll(notifications: readonly Notification[]): void {
    for (const n of notifications) this.queueAck(n.id);
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

  private clearTimer(name: TimerName): void {
    const timer = this.timers.get(name);
    if (timer !== undefined) clearTimeout(timer);
    this.timers.delete(name);
  }

  /** One timer per name: setting it again replaces it, and `stop()` clears them all. */
  private setTimer(name: TimerName, ms: number, run: () => void): void {
    this.clearTimer(name);
    this.timers.set(
      name,
      setTimeout(() => {
        this.timers.delete(name);
        if (!this.stopped) run();
      }, ms),
    );
  }

}
