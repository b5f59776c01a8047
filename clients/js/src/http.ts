/** The api's user endpoints (README, "Users (JWT)" and "Chat (JWT)"),
 * called with the user's token. */
import { NotifyError } from "./types.js";
import type { ChatMessage, Conversation, Notification } from "./types.js";

export interface FeedPage {
  notifications: Notification[];
  next_cursor: number | null;
  unread_count: number;
}

export class Api {
  constructor(
    private readonly base: string,
    private readonly token: () => Promise<string>,
    private readonly fetcher: typeof fetch,
  ) {}

  feed(limit: number, before: number | null): Promise<FeedPage> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before !== null) query.set("before", String(before));
    return this.call("GET", `/api/notifications?${query}`);
  }

  markRead(id: number): Promise<{ changed: boolean; unread_count: number }> {
    return this.call("PUT", `/api/notifications/${id}/read`);
  }

  readAll(): Promise<{ updated: number; up_to: number | null }> {
    return this.call("PUT", "/api/notifications/read-all");
  }

  delete(id: number): Promise<void> {
    return this.call("DELETE", `/api/notifications/${id}`);
  }

  conversations(limit: number, before: string | null): Promise<{ conversations: Conversation[]; next_cursor: string | null }> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before !== null) query.set("before", before);
    return this.call("GET", `/api/conversations?${query}`);
  }

  conversation(id: number): Promise<{ conversation: Conversation }> {
    return this.call("GET", `/api/conversations/${id}`);
  }

  openConversation(body: { type: "direct" | "group"; members: string[]; title?: string }): Promise<{ conversation: Conversation }> {
    return this.call("POST", "/api/conversations", body);
  }

  messages(id: number, limit: number, before: number | null): Promise<{ messages: ChatMessage[]; next_cursor: number | null }> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before !== null) query.set("before", String(before));
    return this.call("GET", `/api/conversations/${id}/messages?${query}`);
  }

  /** Sends `body` with the token; a refusal becomes a `NotifyError` with the
   * server's code. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${await this.token()}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetcher(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new NotifyError("network_error", `${method} ${path}: ${String(error)}`);
    }
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // A proxy's HTML page: reported by status below.
    }
    if (!response.ok) {
      const error = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
      throw new NotifyError(error?.code ?? `http_${response.status}`, error?.message ?? `${method} ${path}: ${response.status}`);
    }
    return parsed as T;
  }
}

/** The api's base address from the gateway's: `wss://host/ws` → `https://host`. */
export function apiBaseOf(socketUrl: string): string {
  const url = new URL(socketUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return url.origin;
}
