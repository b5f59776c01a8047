/** What a lost connection means for the next attempt, from its close code
 * and reason (docs/protocol.md, Close codes) or the HTTP refusal of its
 * upgrade. */
import type { Refusal } from "./transport.js";

export type Next =
  /** Try again after the usual backoff. */
  | { kind: "backoff"; code: string }
  /** The node is going away or full: another one is there, go at once (with a little jitter). */
  | { kind: "soon"; code: string }
  /** The server said when: wait that long. */
  | { kind: "after"; ms: number; code: string }
  /** The token was refused: ask for a new one once, then give up. */
  | { kind: "new_token"; code: string }
  /** Do not reconnect. */
  | { kind: "stop"; code: string; message: string };

const AUTH_REASONS: Record<string, string> = {
  "invalid token": "invalid_token",
  "token expired": "token_expired",
  "token revoked": "token_revoked",
};

export function afterClose(code: number, reason: string, refusal: Refusal | null): Next {
  if (refusal) return afterRefusal(refusal);
  switch (code) {
    case 1008: {
      const auth = AUTH_REASONS[reason];
      if (auth) return { kind: "new_token", code: auth };
      if (reason === "session revoked") {
        return { kind: "stop", code: "session_revoked", message: "this session was signed out" };
      }
      if (reason === "authentication required") {
        return { kind: "stop", code: "authentication_required", message: "the server did not take the auth frame" };
      }
      return { kind: "backoff", code: slug(reason) || "policy_violation" };
    }
    case 1012:
      return { kind: "soon", code: "server_restarting" };
    case 1013:
      return { kind: "soon", code: "too_slow" };
    case 1001:
      return { kind: "backoff", code: reason === "heartbeat timeout" ? "heartbeat_timeout" : "going_away" };
    case 4000:
      // The client gave up on a silent or stuck socket itself.
      return { kind: "backoff", code: reason || "connection_lost" };
    case 1002:
    case 1009:
      return { kind: "backoff", code: slug(reason) || "protocol_error" };
    default:
      return { kind: "backoff", code: "connection_lost" };
  }
}

function afterRefusal(refusal: Refusal): Next {
  const code = refusal.code ?? `http_${refusal.status}`;
  if (refusal.status === 401) return { kind: "new_token", code };
  if (refusal.status === 429 && refusal.retryAfterSecs !== null) {
    return { kind: "after", ms: refusal.retryAfterSecs * 1000, code };
  }
  if (refusal.status === 503) return { kind: "soon", code };
  if (refusal.status === 403 || refusal.status === 400) {
    return { kind: "stop", code, message: `the gateway refused the connection (${refusal.status} ${code})` };
  }
  return { kind: "backoff", code };
}

function slug(reason: string): string {
  return reason
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "_")
    .replace(/^_|_$/g, "");
}
