// What the tests need of the cluster clients/with-cluster started: its
// address and secrets, tokens, senders, and its gateway processes.
import { execSync } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";

import WebSocket from "ws";

import { NotifyClient, type NotifyClientOptions, type NotifyEvents, type SocketConstructor, type SocketLike } from "../src/index.js";

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through clients/with-cluster (npm test does)`);
  return value;
}

export const base = setting("NOTIFY_URL");
export const socketUrl = base.replace(/^http/, "ws") + "/ws";
const apiKey = setting("NOTIFY_API_KEY");
const jwtSecret = setting("NOTIFY_JWT_SECRET");

/** A user id no other test (or earlier run) uses. */
export function newUser(name: string): string {
  return `${name}-${randomBytes(6).toString("hex")}`;
}

/** An HS256 token for `user`, as the identity provider would sign it. */
export function sign(user: string, options: { ttlSecs?: number; jti?: string } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const header = encode({ alg: "HS256", typ: "JWT" });
  const claims = encode({
    sub: user,
    iat: now,
    exp: now + (options.ttlSecs ?? 3600),
    jti: options.jti ?? randomBytes(16).toString("hex"),
  });
  const signature = createHmac("sha256", jwtSecret).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

/** A server call with the API key; returns the parsed answer. */
export async function server(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** A user call (the user's token) through nginx, as another device makes it. */
export async function asUser(user: string, method: string, path: string): Promise<number> {
  const response = await fetch(base + path, { method, headers: { authorization: `Bearer ${sign(user)}` } });
  await response.arrayBuffer();
  return response.status;
}

/** Sends `user` a notification through nginx; its id. */
export async function notify(user: string, title: string): Promise<number> {
  const reply = await server("POST", "/v1/notifications", { recipients: [user], title, message: `${title}: body` });
  if (reply.status !== 202) throw new Error(`send: ${reply.status} ${JSON.stringify(reply.body)}`);
  return reply.body.ids[0] as number;
}

/** A client of `user` with fresh tokens, unless options say otherwise. */
export function clientOf(user: string, options: Partial<NotifyClientOptions> = {}): NotifyClient {
  return new NotifyClient({
    url: socketUrl,
    token: () => sign(user),
    backoff: { initialMs: 100, maxMs: 1000 },
    ...options,
  });
}

/** Resolves with the arguments of the first `name` event that `accept`s. */
export function next<K extends keyof NotifyEvents>(
  client: NotifyClient,
  name: K,
  accept: (...args: NotifyEvents[K]) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<NotifyEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${String(name)} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = client.on(name, (...args) => {
      if (!accept(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

/** Resolves once `condition` holds, checked at every `change` of the client. */
export async function until(client: NotifyClient, condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  if (condition()) return;
  await next(client, "change", condition, timeoutMs).catch(() => {
    throw new Error(`timed out waiting for ${what}`);
  });
}

/** The gateway process holding `node` ("gw-2:28083"), killed with `signal`. */
export function killGateway(node: string, signal: NodeJS.Signals = "SIGKILL"): number {
  const number = /^gw-(\d+)/.exec(node)?.[1];
  if (number === undefined) throw new Error(`unexpected node name ${node}`);
  const pid = Number(readFileSync(`${setting("NOTIFY_CLUSTER")}/gateway-${number}.pid`, "utf8").trim());
  process.kill(pid, signal);
  return pid;
}

/** Starts again whatever a test stopped. */
export function restoreCluster(): void {
  execSync(setting("NOTIFY_CLUSTER_UP"), { stdio: "ignore" });
}

/** The sender's view of a notification (`GET /v1/notifications/{id}`), polled until `state`. */
export async function stateBecomes(id: number, state: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = await server("GET", `/v1/notifications/${id}`);
    if (reply.body?.state === state) return;
    if (Date.now() > deadline) throw new Error(`notification ${id} is ${reply.body?.state}, not ${state}`);
    // The ack writer flushes in batches; nothing announces it.
    await delay(50);
  }
}

/** A WebSocket whose new connections wait while the gate is held: a client
 * kept offline for as long as a test needs. */
export function gatedSocket(): { Socket: SocketConstructor; hold(): void; release(): void } {
  let gate: Promise<void> = Promise.resolve();
  let open: () => void = () => undefined;
  class Gated implements SocketLike {
    readyState = 0;
    onopen: SocketLike["onopen"] = null;
    onmessage: SocketLike["onmessage"] = null;
    onclose: SocketLike["onclose"] = null;
    onerror: SocketLike["onerror"] = null;
    private inner: WebSocket | null = null;
    private closed = false;

    constructor(url: string) {
      void gate.then(() => {
        if (this.closed) return;
        const socket = new WebSocket(url);
        this.inner = socket;
        socket.onopen = () => {
          this.readyState = 1;
          this.onopen?.({});
        };
        socket.onmessage = (event) => this.onmessage?.({ data: event.data });
        socket.onclose = (event) => {
          this.readyState = 3;
          this.onclose?.({ code: event.code, reason: event.reason });
        };
        socket.onerror = () => undefined;
      });
    }

    send(data: string): void {
      this.inner?.send(data);
    }

    close(code?: number, reason?: string): void {
      this.closed = true;
      this.inner?.close(code, reason);
    }
  }
  return {
    Socket: Gated,
    hold: () => {
      gate = new Promise((resolve) => (open = resolve));
    },
    release: () => open(),
  };
}
