export { NotifyClient } from "./client.js";
export type { NotifyClientOptions, NotifyEvents, Session, StatusDetail } from "./client.js";
export type { BackoffOptions } from "./backoff.js";
export type { SendOptions } from "./chat.js";
export type { TokenSource } from "./token.js";
export type { TopicHandler } from "./topics.js";
export type { SocketConstructor, SocketLike } from "./transport.js";
export { NotifyError } from "./types.js";
export type { Attachment, ChatMessage, Conversation, ConversationMember, Notification, Status, TopicEvent } from "./types.js";
