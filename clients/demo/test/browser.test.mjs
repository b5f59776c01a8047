// The bell page in a real browser against a real cluster (run through
// clients/with-cluster: `npm test`): two pages of one user, notifications
// sent through nginx, read state kept in step between the pages, a gateway
// killed under one page, and the screenshot of the README.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, "artifacts");
// The README's picture (docs/images/bell.png) is a copy of this file.
const SCREENSHOT = process.env.BELL_SCREENSHOT ?? path.join(ARTIFACTS, "bell.png");
const TIMEOUT = 15_000;

const { NOTIFY_URL, NOTIFY_API_KEY, NOTIFY_CLUSTER, NOTIFY_CLUSTER_UP } = process.env;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

// A user of this run only (the screenshot shows it).
const user = `alice-${randomBytes(3).toString("hex")}`;
/** Every notification sent to `user`, in order. */
const sent = [];

let browser;
let page1;
let page2;
/** Console lines and page errors of each page, shown when a step fails. */
const logs = new Map();
let failed = false;
let killedGateway = false;

/** A test step; the steps after a failed one are skipped (they build on it). */
function step(name, fn) {
  it(name, async (t) => {
    if (failed) {
      t.skip("an earlier step failed");
      return;
    }
    try {
      await fn();
    } catch (error) {
      failed = true;
      await saveArtifacts(name);
      throw error;
    }
  });
}

async function saveArtifacts(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const slug = name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  for (const [label, page] of [["page1", page1], ["page2", page2]]) {
    if (!page || page.isClosed()) continue;
    try {
      await page.screenshot({ path: path.join(ARTIFACTS, `${slug}-${label}.png`), timeout: 5000 });
      writeFileSync(path.join(ARTIFACTS, `${slug}-${label}.html`), await page.content());
    } catch {
      // The page may be gone: what was saved is enough.
    }
    console.error(`--- ${label} console ---\n${(logs.get(page) ?? []).join("\n")}`);
  }
}

/** POST /v1/notifications through nginx, as a server would; returns the id. */
async function send(title, message) {
  const response = await fetch(`${NOTIFY_URL}/v1/notifications`, {
    method: "POST",
    headers: { authorization: `Bearer ${NOTIFY_API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ recipients: [user], title, message }),
  });
  const body = await response.json();
  assert.equal(response.status, 202, `POST /v1/notifications: ${JSON.stringify(body)}`);
  assert.equal(body.ids.length, 1);
  const id = body.ids[0];
  sent.push({ id, title });
  return id;
}

/** Waits until the badge reads `text` ("" = hidden). */
function badge(page, text) {
  return page.waitForFunction(
    (expected) => {
      const element = document.querySelector("[data-testid=badge]");
      if (!element) return false;
      return expected === "" ? element.hidden : !element.hidden && element.textContent === expected;
    },
    text,
    { timeout: TIMEOUT },
  );
}

function toast(page, title) {
  return page.locator("[data-testid=toast]", { hasText: title }).first().waitFor({ state: "visible", timeout: TIMEOUT });
}

function item(page, id) {
  return page.locator(`[data-testid=item][data-id="${id}"]`);
}

function online(page) {
  return page.waitForSelector("[data-testid=status][data-status=online]", { state: "attached", timeout: TIMEOUT });
}

// A page behind the other tab gets few animation frames, and clicks wait
// for frames (to see the element stand still): the clicked page comes first.
async function openDropdown(page) {
  await page.bringToFront();
  const dropdown = page.getByTestId("dropdown");
  if (!(await dropdown.isVisible())) await page.getByTestId("bell").click();
  await dropdown.waitFor({ state: "visible", timeout: TIMEOUT });
}

async function closeDropdown(page) {
  await page.bringToFront();
  const dropdown = page.getByTestId("dropdown");
  if (await dropdown.isVisible()) await page.getByTestId("bell").click();
  await dropdown.waitFor({ state: "hidden", timeout: TIMEOUT });
}

describe("bell page", { timeout: 180_000 }, () => {
  before(async () => {
    assert.ok(NOTIFY_URL && NOTIFY_API_KEY && NOTIFY_CLUSTER, "run through clients/with-cluster (npm test)");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    const context = await browser.newContext({ viewport: { width: 900, height: 600 }, deviceScaleFactor: 2 });
    context.setDefaultTimeout(TIMEOUT);
    page1 = await context.newPage();
    page2 = await context.newPage();
    for (const page of [page1, page2]) {
      const lines = [];
      logs.set(page, lines);
      page.on("console", (message) => lines.push(`[${message.type()}] ${message.text()}`));
      page.on("pageerror", (error) => lines.push(`[pageerror] ${error.stack ?? error}`));
    }
  });

  after(async () => {
    await browser?.close();
    if (killedGateway && NOTIFY_CLUSTER_UP) {
      // Back to three gateways for whatever runs next on this cluster.
      execSync(NOTIFY_CLUSTER_UP, { env: process.env, stdio: ["ignore", "ignore", "inherit"] });
    }
  });

  step("both pages sign in from ?user= and go online", async () => {
    const url = `${NOTIFY_URL}/demo/?user=${encodeURIComponent(user)}`;
    await Promise.all([page1.goto(url), page2.goto(url)]);
    await Promise.all([online(page1), online(page2)]);
    for (const page of [page1, page2]) {
      assert.match((await page.getByTestId("status").getAttribute("data-node")) ?? "", /^gw-\d+/);
      assert.equal(await page.getByTestId("badge").isHidden(), true);
      assert.equal(await page.evaluate(() => window.notifyClient?.status), "online");
    }
  });

  step("a notification sent through nginx shows a toast and the badge in both", async () => {
    await send("Welcome to Acme", "Your workspace is ready. Invite your team to get started.");
    await Promise.all([toast(page1, "Welcome to Acme"), toast(page2, "Welcome to Acme")]);
    await Promise.all([badge(page1, "1"), badge(page2, "1")]);
  });

  step("reading it in one page clears the badge in the other", async () => {
    const [first] = sent;
    await openDropdown(page1);
    const row = item(page1, first.id);
    await row.waitFor({ state: "visible" });
    assert.equal(await row.getAttribute("data-unread"), "true");
    await row.click();
    await Promise.all([badge(page1, ""), badge(page2, "")]);
    await page2.waitForSelector(`[data-testid=item][data-id="${first.id}"][data-unread=false]`, { state: "attached" });
    await page1.waitForSelector(`[data-testid=item][data-id="${first.id}"][data-unread=false]`, { state: "attached" });
    await closeDropdown(page1);
  });

  step("more than nine unread show 9+", async () => {
    const batch = [
      ["Build #412 passed", "main · 3m 12s · all 214 checks green"],
      ["Maya commented on Q3 roadmap", "“Can we move the launch review to Thursday?”"],
      ["Invoice INV-2031 is due", "€1,240.00 is due in 3 days."],
      ["New sign-in from Firefox on Linux", "Berlin, Germany. Not you? Review your sessions."],
      ["Deploy to production finished", "api v2.8.1 is live on 3 nodes."],
      ["Leo assigned you a task", "Update the onboarding checklist"],
      ["Storage 80% full", "Archive old exports or upgrade your plan."],
      ["Weekly report is ready", "Active users up 12% week over week."],
      ["Priya mentioned you", "@you can you review the pricing page copy?"],
      ["Backup completed", "Nightly backup finished in 4 min."],
    ];
    for (const [title, message] of batch) await send(title, message);
    await Promise.all([badge(page1, "9+"), badge(page2, "9+")]);
    assert.equal(await page2.evaluate(() => window.notifyClient?.unreadCount), 10);
  });

  step("a gateway killed under page 2: it reconnects elsewhere and misses nothing", async () => {
    const status = page2.getByTestId("status");
    const node = (await status.getAttribute("data-node")) ?? "";
    const match = /^gw-(\d+)/.exec(node);
    assert.ok(match, `page 2's node: ${JSON.stringify(node)}`);
    const pid = Number(readFileSync(path.join(NOTIFY_CLUSTER, `gateway-${match[1]}.pid`), "utf8").trim());
    assert.ok(Number.isSafeInteger(pid) && pid > 0, `pid of gateway-${match[1]}`);
    process.kill(pid, "SIGKILL");
    killedGateway = true;

    await page2.waitForFunction(
      (killed) => {
        const element = document.querySelector("[data-testid=status]");
        return element?.dataset.status === "online" && element.dataset.node !== "" && element.dataset.node !== killed;
      },
      node,
      { timeout: TIMEOUT },
    );
    assert.notEqual(await status.getAttribute("data-node"), node);

    const id = await send("Payment received", "Globex paid invoice INV-2027 (€3,980.00).");
    await Promise.all([toast(page2, "Payment received"), toast(page1, "Payment received")]);
    await item(page2, id).waitFor({ state: "attached" });
    await item(page1, id).waitFor({ state: "attached" });
    // Each notification once: nothing lost across the reconnect, nothing twice.
    for (const page of [page1, page2]) {
      for (const { id: sentId } of sent) {
        assert.equal(await item(page, sentId).count(), 1, `notification ${sentId} once in the dropdown`);
      }
      assert.equal(await page.locator("[data-testid=item]").count(), sent.length);
    }
    await Promise.all([badge(page1, "9+"), badge(page2, "9+")]);
    for (const page of [page1, page2]) {
      assert.equal(await page.evaluate(() => window.notifyClient?.unreadCount), 11);
    }
  });

  step("the dropdown (screenshot) and mark all as read", async () => {
    await online(page1);
    await openDropdown(page1);
    await item(page1, sent.at(-1).id).waitFor({ state: "visible" });
    // Opening the dropdown dismisses the toasts: wait until they are gone.
    await page1.waitForFunction(() => document.querySelectorAll("[data-testid=toast]").length === 0, null, {
      timeout: TIMEOUT,
    });
    // The top of the page, without a hover or a focus ring.
    await page1.mouse.move(20, 580);
    await page1.evaluate(() => {
      if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
      window.scrollTo(0, 0);
    });
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page1.screenshot({ path: SCREENSHOT, animations: "disabled", caret: "hide" });

    await page1.getByTestId("mark-all").click();
    await Promise.all([badge(page1, ""), badge(page2, "")]);
    for (const page of [page1, page2]) {
      await page.waitForFunction(
        () => {
          const rows = [...document.querySelectorAll("[data-testid=item]")];
          return rows.length > 0 && rows.every((row) => row.dataset.unread === "false");
        },
        null,
        { timeout: TIMEOUT },
      );
    }
    assert.equal(await page1.getByTestId("mark-all").isDisabled(), true);
  });

  step("no errors on either page", async () => {
    for (const [label, page] of [["page1", page1], ["page2", page2]]) {
      const errors = (logs.get(page) ?? []).filter((line) => line.startsWith("[pageerror]"));
      assert.deepEqual(errors, [], `${label} threw`);
    }
  });
});
