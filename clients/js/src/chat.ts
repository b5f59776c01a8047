/** Chat messages on their way: each waits for its `message.sent` (or an
 * `error` naming its `client_id`), and is sent again with the same
 * `client_id` after a reconnect, which the server stores only once. */
import { NotifyError } from "./types.js";
import type { Attachment, ChatMessage } from "./types.js";

export interface SendOptions {
  attachments?: Attachment[];
  /** Makes retries safe; a random one by default. */
  clientId?: string;
}

interface Pending {
  frame: string;
  resolve(message: ChatMessage): void;
  reject(error: NotifyError): void;
}

export class Outbox {
  private pending = new Map<string, Pending>();

  /** Queues a message; the promise settles with the server's answer. */
  add(conversationId: number, body: string, options: SendOptions): { frame: string; done: Promise<ChatMessage> } {
    const clientId = options.clientId ?? randomId();
    const frame = JSON.stringify({
      type: "message.send",
      conversation_id: conversationId,
      body,
      client_id: clientId,
      ...(options.attachments ? { attachments: options.attachments } : {}),
    });
    const done = new Promise<ChatMessage>((resolve, reject) => {
      this.pending.set(key(conversationId, clientId), { frame, resolve, reject });
    });
    return { frame, done };
  }

  /** Frames still waiting for an answer, to send again on a new connection. */
  get frames(): string[] {
    return [...this.pending.values()].map((p) => p.frame);
  }

  sent(message: ChatMessage, clientId: string | null): void {
    if (clientId === null) return;
    const k = key(message.conversation_id, clientId);
    this.pending.get(k)?.resolve(message);
    this.pending.delete(k);
  }

  /** An `error` frame; true when it answered a queued message. */
  refused(conversationId: number | undefined, clientId: string | undefined, error: NotifyError): boolean {
    if (conversationId === undefined || clientId === undefined) return false;
    const k = key(conversationId, clientId);
    const pending = this.pending.get(k);
    if (!pending) return false;
    this.pending.delete(k);
    pending.reject(error);
    return true;
  }

  failAll(error: NotifyError): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

function key(conversationId: number, clientId: string): string {
  return `${conversationId}:${clientId}`;
}

function randomId(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  return Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join("");
}
