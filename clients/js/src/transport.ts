/** Opening a WebSocket in browsers (the global `WebSocket`) and in Node
 * (the global one from Node 22, the `ws` package before), with one shape
 * for what can happen to it. */

/** The part of the WebSocket API the client uses; both the browser's and
 * the `ws` package's sockets have it. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type SocketConstructor = new (url: string) => SocketLike;

/** The upgrade was answered with an HTTP error. Only the `ws` package
 * reports it; a browser sees a close with code 1006 and nothing else. */
export interface Refusal {
  status: number;
  code: string | null;
  retryAfterSecs: number | null;
}

export interface SocketHandlers {
  open(): void;
  message(text: string): void;
  close(code: number, reason: string, refusal: Refusal | null): void;
}

export const OPEN = 1;

/** In Node the `ws` package (it reports a refused upgrade's status and
 * `Retry-After`, which Node's own WebSocket, like a browser's, hides); in
 * browsers the global `WebSocket`. */
export async function defaultSocket(): Promise<SocketConstructor> {
  const global = (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
  const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
  if (node !== undefined || !global) {
    try {
      // Through a variable so bundlers for browsers leave the import alone.
      const name = "ws";
      const module = (await import(/* @vite-ignore */ name)) as { default: SocketConstructor };
      return module.default;
    } catch (error) {
      if (global) return global;
      throw new Error(`no WebSocket: install the ws package (${String(error)})`);
    }
  }
  return global;
}

/** Opens `url`; every outcome reaches `handlers` once (`close` last). */
export function openSocket(Socket: SocketConstructor, url: string, handlers: SocketHandlers): SocketLike {
  const socket = new Socket(url);
  let refusal: Refusal | null = null;
  let closed = false;
  const close = (code: number, reason: string) => {
    if (closed) return;
    closed = true;
    handlers.close(code, reason, refusal);
  };
  // `ws` (Node) only: the HTTP answer of a refused upgrade, with its code
  // and Retry-After.
  const node = socket as unknown as {
    on?: (event: string, listener: (...args: never[]) => void) => void;
    terminate?: () => void;
  };
  if (typeof node.on === "function") {
    node.on("unexpected-response", ((_request: unknown, response: IncomingResponse) => {
      // With this listener `ws` leaves the failed handshake to us: read
      // the answer, report it, then drop the request.
      void readRefusal(response).then((read) => {
        refusal = read;
        close(1006, "");
        response.destroy();
        node.terminate?.();
      });
    }) as (...args: never[]) => void);
    // `ws` also emits "error" for the refusal; the close above reports it.
    node.on("error", (() => undefined) as (...args: never[]) => void);
  }
  socket.onopen = () => handlers.open();
  socket.onmessage = (event) => {
    if (typeof event.data === "string") handlers.message(event.data);
  };
  socket.onclose = (event) => close(event.code, event.reason);
  socket.onerror = () => undefined;
  return socket;
}

interface IncomingResponse {
  statusCode?: number;
  headers: Record<string, string | string[] | undefined>;
  setEncoding(encoding: string): void;
  on(event: string, listener: (chunk?: string) => void): void;
  destroy(): void;
}

function readRefusal(response: IncomingResponse): Promise<Refusal> {
  return new Promise((resolve) => {
    const status = response.statusCode ?? 0;
    const header = response.headers["retry-after"];
    const retry = Number(Array.isArray(header) ? header[0] : header);
    let body = "";
    const done = () => {
      let code: string | null = null;
      try {
        const parsed = JSON.parse(body) as { error?: { code?: unknown } };
        code = typeof parsed.error?.code === "string" ? parsed.error.code : null;
      } catch {
        // Not the gateway's JSON (a proxy's page): the status says enough.
      }
      resolve({ status, code, retryAfterSecs: Number.isFinite(retry) && retry >= 0 ? retry : null });
    };
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      done();
    };
    // A refusal whose body never ends must not hold the client.
    const timer = setTimeout(finish, 5000);
    response.setEncoding("utf8");
    response.on("data", (chunk) => {
      if (body.length < 4096) body += chunk ?? "";
    });
    response.on("end", finish);
    response.on("close", finish);
    response.on("error", finish);
  });
}
