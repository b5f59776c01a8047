/** Chat messages on their way: each waits for its `message.sent` (or an
 * `error` naming its `client_id`), and is sent again with the same
 * `client_id` after a reconnect or a passing failure (`unavailable`,
 * `internal_error`), which the server stores only once. */
import { NotifyError } from "./types.js";
import type { Attachment, ChatMessage } from "./types.js";

export interface SendOptions {
  attachments?: Attachment[];
  /** Makes retries safe; a random one by default. */
  clientId?: string;
}

/** Refusals after which the same message may be sent again. */
const PASSING = new Set(["unavailable", "internal_error"]);
/** Tries of one message against passing refusals before it is given up. */
const TRIES = 5;

interface Pending {
  frame: string;
  clientId: string;
  tries: number;
  resolve(message: ChatMessage): void;
  reject(error: NotifyError): void;
}

export type Refusal =
  /** Not about a queued message. */
  | { kind: "unknown" }
  /** Given up: its promise was rejected. */
  | { kind: "rejected" }
  /** Send `frame` again after `delayMs`. */
  | { kind: "retry"; frame: string; delayMs: number };

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
      this.pending.set(key(conversationId, clientId), { frame, clientId, tries: 1, resolve, reject });
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

  /** An `error` frame naming a conversation and a `client_id`. */
  refused(conversationId: number | undefined, clientId: string | undefined, error: NotifyError): Refusal {
    if (conversationId === undefined || clientId === undefined) return { kind: "unknown" };
    const k = key(conversationId, clientId);
    const pending = this.pending.get(k);
    if (!pending) return { kind: "unknown" };
    if (PASSING.has(error.code) && pending.tries < TRIES) {
      pending.tries += 1;
      return { kind: "retry", frame: pending.frame, delayMs: 500 * 2 ** pending.tries };
    }
    this.pending.delete(k);
    pending.reject(new NotifyError(error.code, error.message, false, pending.clientId));
    return { kind: "rejected" };
  }

  failAll(error: NotifyError): void {
    for (const pending of this.pending.values()) {
      pending.reject(new NotifyError(error.code, error.message, error.fatal, pending.clientId));
    }
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
