// The shapes of docs/protocol.md, as the client library sees them.

/** A notification, as the feed API and `notification` frames carry it. */
export interface Notification {
  id: number;
  user_id: string;
  type: string;
  title: string;
  message: string;
  link: string | null;
  metadata: Record<string, unknown> | null;
  created_at: string;
  read_at: string | null;
}

/** An `event` frame: a topic, role, user-list or broadcast event. */
export interface TopicEvent {
  type: "event";
  topic?: string;
  roles?: string[];
  event: string;
  data: unknown;
  id: string;
  sent_at: string;
  from?: string;
}

export interface Attachment {
  url: string;
  name: string;
  mime_type: string;
  size: number;
}

/** A chat message (docs/protocol.md, Chat). */
export interface ChatMessage {
  id: number;
  conversation_id: number;
  sender_id: string;
  body: string;
  attachments: Attachment[];
  client_id: string | null;
  created_at: string;
  edited_at: string | null;
  deleted_at: string | null;
}

export interface ConversationMember {
  user_id: string;
  joined_at: string;
  last_read_message_id: number;
}

/** A conversation as one of its members sees it. */
export interface Conversation {
  id: number;
  type: "direct" | "group";
  title: string | null;
  created_by: string;
  created_at: string;
  last_activity_at: string;
  members: ConversationMember[];
  last_message: ChatMessage | null;
  /** Messages of others after this member's read mark. */
  unread_count: number;
  last_read_message_id: number;
}

/** Frames the server sends (only the fields the library reads). */
export type ServerFrame =
  | { type: "welcome"; session_id: string; node: string; heartbeat_s: number; unread_count: number | null }
  | { type: "notification"; notification: Notification }
  | { type: "read"; ids: number[] }
  | { type: "read_all"; up_to: number }
  | { type: "deleted"; ids: number[] }
  | { type: "resumed"; count: number; truncated: boolean; oldest_id: number | null; unread_count?: number }
  | { type: "refreshed"; expires_at: number }
  | { type: "pong" }
  | { type: "subscribed"; topic: string; snapshot: TopicEvent | null }
  | { type: "unsubscribed"; topic: string }
  | TopicEvent
  | { type: "presence"; topic: string; joined?: string; left?: string }
  | { type: "message.sent"; client_id: string | null; message: ChatMessage }
  | { type: "message" | "message.updated" | "message.deleted"; message: ChatMessage }
  | { type: "typing"; conversation_id: number; user_id: string }
  | { type: "messages_read"; conversation_id: number; user_id: string; up_to: number }
  | ErrorFrame;

export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  topic?: string;
  conversation_id?: number;
  client_id?: string;
}

/** Where the connection is. */
export type Status =
  /** Opening a socket or authenticating. */
  | "connecting"
  /** Authenticated (`welcome` received): events flow. */
  | "online"
  /** Lost; waiting to reconnect (see `retryInMs` of the `status` event). */
  | "offline"
  /** Stopped for good: `stop()` was called, a new token was refused too, the session was signed out, or the gateway refused the connection outright (see `error`). */
  | "stopped";

/** Why the client reports an error or stopped. `code` is the server's stable code where there is one. */
export class NotifyError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** True when the client stopped because of it. */
    readonly fatal = false,
    /** For a chat message: its `client_id`, to send it again safely. */
    readonly clientId?: string,
  ) {
    super(message);
    this.name = "NotifyError";
  }
}
