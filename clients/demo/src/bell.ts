/** The notification bell page: signs in with the local cluster's
 * development tokens, then shows one user's live notifications through
 * NotifyClient (a bell with an unread badge, a dropdown, toasts and the
 * connection's status). */
import { NotifyClient, type Notification, type Status, type StatusDetail } from "@notify/client";
import { badgeText, relativeTime, shellQuote } from "./format.js";

declare global {
  interface Window {
    /** The signed-in user's client (tests and the console read it). */
    notifyClient?: NotifyClient;
  }
}

/** sessionStorage key of the signed-in user: a reload signs in again. */
const USER_KEY = "notify-demo:user";
const DEFAULT_USER = "demo-user";
const TOAST_MS = 5000;
const MAX_TOASTS = 4;

// ---- elements -------------------------------------------------------------

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
}

const ui = {
  signin: byId("signin"),
  form: byId<HTMLFormElement>("signin-form"),
  userInput: byId<HTMLInputElement>("signin-user"),
  signinButton: byId<HTMLButtonElement>("signin-button"),
  signinError: byId("signin-error"),
  app: byId("app"),
  status: byId("status"),
  statusText: byId("status-text"),
  bell: byId<HTMLButtonElement>("bell"),
  badge: byId("badge"),
  dropdown: byId("dropdown"),
  list: byId<HTMLUListElement>("list"),
  empty: byId("empty"),
  markAll: byId<HTMLButtonElement>("mark-all"),
  loadMore: byId<HTMLButtonElement>("load-more"),
  userName: byId("user-name"),
  avatar: byId("avatar"),
  helloUser: byId("hello-user"),
  curl: byId("curl"),
  signout: byId<HTMLButtonElement>("signout"),
  toasts: byId("toasts"),
};

// ---- state ----------------------------------------------------------------

let client: NotifyClient | null = null;
let userId = "";
let lastDetail: StatusDetail = {};
let loadingMore = false;
const rows = new Map<number, HTMLLIElement>();
const baseTitle = document.title;

// ---- signing in -------------------------------------------------------------

/** A development token for `user` from the api (`POST /api/dev/token`). */
async function devToken(user: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(new URL("/api/dev/token", location.origin), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: user }),
    });
  } catch {
    throw new Error("the api cannot be reached");
  }
  const body = (await response.json().catch(() => null)) as {
    token?: string;
    error?: { code?: string; message?: string };
  } | null;
  if (!response.ok || typeof body?.token !== "string") {
    if (response.status === 404) throw new Error("development tokens are off (DEV_TOKENS=false)");
    throw new Error(body?.error?.message ?? `the api answered ${response.status}`);
  }
  return body.token;
}

function socketUrl(): string {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
}

async function signIn(user: string): Promise<void> {
  user = user.trim();
  if (user === "") {
    showSigninError("Enter a user id.");
    return;
  }
  ui.signinButton.disabled = true;
  ui.signinButton.textContent = "Signing in…";
  ui.signinError.hidden = true;
  let first: string | null;
  try {
    first = await devToken(user);
  } catch (error) {
    showSigninError(`Could not sign in: ${error instanceof Error ? error.message : String(error)}`);
    return;
  } finally {
    ui.signinButton.disabled = false;
    ui.signinButton.textContent = "Sign in";
  }
  sessionStorage.setItem(USER_KEY, user);
  userId = user;

  const next = new NotifyClient({
    url: socketUrl(),
    // The token of the sign-in first, then a new one whenever the client
    // asks (before the held one expires, after a refusal).
    token: async () => {
      const token = first;
      first = null;
      return token ?? devToken(user);
    },
  });
  client = next;
  window.notifyClient = next;
  next.on("change", render);
  next.on("status", (_status: Status, detail: StatusDetail) => {
    lastDetail = detail;
    renderStatus();
  });
  // The client announces each notification once, and never the older feed
  // a resume may resend.
  next.on("notification", showToast);
  next.on("error", (error) => console.warn(`notify: ${error.code}: ${error.message}`));

  ui.userName.textContent = user;
  ui.avatar.textContent = initials(user);
  ui.helloUser.textContent = user;
  ui.curl.textContent = curlExample(user);
  ui.signin.hidden = true;
  ui.app.hidden = false;
  // Resolves once online; rejects if the client stops first (its status
  // line then says why).
  next.start().catch(() => render());
  render();
}

function signOut(): void {
  client?.stop();
  client = null;
  window.notifyClient = undefined;
  sessionStorage.removeItem(USER_KEY);
  const url = new URL(location.href);
  if (url.searchParams.has("user")) {
    url.searchParams.delete("user");
    history.replaceState(null, "", url);
  }
  closeDropdown();
  for (const row of rows.values()) row.remove();
  rows.clear();
  ui.toasts.replaceChildren();
  document.title = baseTitle;
  ui.app.hidden = true;
  ui.signin.hidden = false;
  ui.userInput.value = userId || DEFAULT_USER;
  ui.userInput.focus();
}

function showSigninError(message: string): void {
  ui.app.hidden = true;
  ui.signin.hidden = false;
  ui.signinError.textContent = message;
  ui.signinError.hidden = false;
}

/** "Ada Lovelace" → "AL", "alice-42" → "A". */
function initials(user: string): string {
  const words = user.split(/[^\p{L}\p{N}]+/u).filter((word) => /^\p{L}/u.test(word));
  const letters = words.slice(0, 2).map((word) => [...word][0] ?? "").join("");
  return (letters || [...user][0] || "?").toUpperCase();
}

function curlExample(user: string): string {
  const body = JSON.stringify({ recipients: [user], title: "Hello", message: "It works" });
  return [
    `curl -X POST ${location.origin}/v1/notifications \\`,
    `  -H "Authorization: Bearer $API_KEY" \\`,
    `  -H 'Content-Type: application/json' \\`,
    `  -d ${shellQuote(body)}`,
  ].join("\n");
}

// ---- rendering --------------------------------------------------------------

function render(): void {
  if (!client) return;
  renderBadge(client.unreadCount);
  renderStatus();
  renderList(client.notifications);
  ui.markAll.disabled = client.unreadCount === 0;
  ui.loadMore.hidden = !client.hasMore || client.notifications.length === 0;
}

function renderBadge(unread: number): void {
  const text = badgeText(unread);
  ui.badge.textContent = text;
  ui.badge.hidden = text === "";
  ui.bell.setAttribute("aria-label", unread > 0 ? `Notifications, ${unread} unread` : "Notifications");
  document.title = text === "" ? baseTitle : `(${text}) ${baseTitle}`;
}

function renderStatus(): void {
  if (!client) return;
  const status = client.status;
  const node = status === "online" ? (client.session?.node ?? "") : "";
  ui.status.dataset.status = status;
  ui.status.dataset.node = node;
  let text: string;
  switch (status) {
    case "online":
      text = node ? `Online · ${node}` : "Online";
      break;
    case "connecting":
      text = "Connecting…";
      break;
    case "offline": {
      const retry = lastDetail.retryInMs;
      text = retry === undefined ? "Offline" : `Offline · retrying in ${Math.max(1, Math.ceil(retry / 1000))} s`;
      break;
    }
    case "stopped":
      text = client.lastError ? `Stopped: ${client.lastError.message}` : "Stopped";
      break;
  }
  ui.statusText.textContent = text;
  ui.status.title = lastDetail.code ? `last change: ${lastDetail.code}` : "";
}

/** Brings the list's rows in line with `items` (newest first), keeping the
 * row of each id so a click is never lost to a redraw. */
function renderList(items: readonly Notification[]): void {
  const wanted = new Set<number>();
  let previous: HTMLLIElement | null = null;
  for (const notification of items) {
    wanted.add(notification.id);
    let row = rows.get(notification.id);
    if (!row) {
      row = createRow(notification);
      rows.set(notification.id, row);
    }
    updateRow(row, notification);
    const expected: ChildNode | null = previous ? previous.nextSibling : ui.list.firstChild;
    if (expected !== row) ui.list.insertBefore(row, expected);
    previous = row;
  }
  for (const [id, row] of rows) {
    if (!wanted.has(id)) {
      row.remove();
      rows.delete(id);
    }
  }
  ui.empty.hidden = items.length > 0;
}

function createRow(notification: Notification): HTMLLIElement {
  const row = element("li", "item");
  row.dataset.testid = "item";
  row.dataset.id = String(notification.id);
  row.tabIndex = 0;
  row.setAttribute("role", "button");

  const dot = element("span", "item-dot");
  dot.setAttribute("aria-hidden", "true");

  const body = element("div", "item-body");
  const title = element("p", "item-title", notification.title);
  const message = element("p", "item-message", notification.message);
  const meta = element("p", "item-meta");
  const time = document.createElement("time");
  time.dateTime = notification.created_at;
  time.title = new Date(notification.created_at).toLocaleString();
  time.textContent = relativeTime(notification.created_at);
  meta.append(time);
  if (notification.link && /^https?:\/\//i.test(notification.link)) {
    const link = document.createElement("a");
    link.href = notification.link;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = "Open";
    meta.append(" · ", link);
  }
  body.append(title, message, meta);
  row.append(dot, body);

  const read = () => {
    const current = client?.notifications.find((n) => n.id === notification.id);
    if (current && current.read_at === null) void client?.markRead(notification.id).catch(reportError);
  };
  row.addEventListener("click", read);
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      read();
    }
  });
  return row;
}

function updateRow(row: HTMLLIElement, notification: Notification): void {
  const unread = notification.read_at === null;
  row.dataset.unread = String(unread);
  row.classList.toggle("unread", unread);
  row.setAttribute("aria-label", `${unread ? "Unread: " : ""}${notification.title}`);
}

/** Relative times age: refresh them now and then. */
function refreshTimes(): void {
  for (const time of document.querySelectorAll<HTMLTimeElement>("time[datetime]")) {
    time.textContent = relativeTime(time.dateTime);
  }
}

// ---- the dropdown -----------------------------------------------------------

function openDropdown(): void {
  ui.dropdown.hidden = false;
  ui.bell.setAttribute("aria-expanded", "true");
  // Everything the toasts said is in the list now.
  for (const toast of [...ui.toasts.children]) dismissToast(toast as HTMLElement);
  refreshTimes();
}

function closeDropdown(): void {
  ui.dropdown.hidden = true;
  ui.bell.setAttribute("aria-expanded", "false");
}

ui.bell.addEventListener("click", (event) => {
  event.stopPropagation();
  if (ui.dropdown.hidden) openDropdown();
  else closeDropdown();
});
ui.dropdown.addEventListener("click", (event) => event.stopPropagation());
document.addEventListener("click", () => {
  if (!ui.dropdown.hidden) closeDropdown();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !ui.dropdown.hidden) {
    closeDropdown();
    ui.bell.focus();
  }
});

ui.markAll.addEventListener("click", () => {
  void client?.markAllRead().catch(reportError);
});

ui.loadMore.addEventListener("click", async () => {
  if (!client || loadingMore) return;
  loadingMore = true;
  ui.loadMore.disabled = true;
  ui.loadMore.textContent = "Loading…";
  try {
    await client.loadMore();
  } catch (error) {
    reportError(error);
  } finally {
    loadingMore = false;
    ui.loadMore.disabled = false;
    ui.loadMore.textContent = "Load more";
    render();
  }
});

function reportError(error: unknown): void {
  console.warn("notify:", error);
}

/** A new element with a class and, optionally, its text. */
function element<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string): HTMLElementTagNameMap[K] {
  const created = document.createElement(tag);
  created.className = className;
  if (text !== undefined) created.textContent = text;
  return created;
}

// ---- toasts -----------------------------------------------------------------

function showToast(notification: Notification): void {
  const toast = element("div", "toast");
  toast.dataset.testid = "toast";
  toast.dataset.id = String(notification.id);
  toast.setAttribute("role", "status");

  const icon = bellIcon();
  icon.classList.add("toast-icon");
  const body = element("div", "toast-body");
  const title = element("p", "toast-title", notification.title);
  const message = element("p", "toast-message", notification.message);
  body.append(title, message);
  const close = element("button", "toast-close");
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", (event) => {
    event.stopPropagation();
    dismissToast(toast);
  });
  toast.append(icon, body, close);
  toast.addEventListener("click", (event) => {
    event.stopPropagation();
    openDropdown();
  });

  ui.toasts.prepend(toast);
  const live = [...ui.toasts.children].filter((t) => !t.classList.contains("leaving"));
  for (const old of live.slice(MAX_TOASTS)) dismissToast(old as HTMLElement);
  setTimeout(() => dismissToast(toast), TOAST_MS);
}

const SVG = "http://www.w3.org/2000/svg";

function bellIcon(): SVGSVGElement {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "18");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute(
    "d",
    "M12 2a6 6 0 0 0-6 6v3.6l-1.7 3.4A1 1 0 0 0 5.2 16.5h13.6a1 1 0 0 0 .9-1.5L18 11.6V8a6 6 0 0 0-6-6zm-2.5 16a2.5 2.5 0 0 0 5 0z",
  );
  svg.append(path);
  return svg;
}

function dismissToast(toast: HTMLElement): void {
  if (toast.classList.contains("leaving")) return;
  toast.classList.add("leaving");
  toast.addEventListener("animationend", () => toast.remove(), { once: true });
  // Without animations (reduced motion) no animationend comes.
  setTimeout(() => toast.remove(), 400);
}

// ---- start --------------------------------------------------------------------

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  void signIn(ui.userInput.value);
});
ui.signout.addEventListener("click", signOut);
setInterval(refreshTimes, 30_000);

const fromQuery = new URLSearchParams(location.search).get("user");
const remembered = sessionStorage.getItem(USER_KEY);
const initial = fromQuery?.trim() || remembered;
ui.userInput.value = initial || DEFAULT_USER;
if (initial) {
  void signIn(initial);
} else {
  ui.signin.hidden = false;
  ui.userInput.select();
}
