// The client's pieces that need no server: backoff, close codes, the
// notification list and token expiry.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Backoff } from "../src/backoff.js";
import { afterClose } from "../src/closing.js";
import { NotificationList } from "../src/list.js";
import { Pacer } from "../src/pacer.js";
import { Tokens, expiryOf } from "../src/token.js";
import { Topics } from "../src/topics.js";
import type { Notification, TopicEvent } from "../src/types.js";

describe("backoff", () => {
  test("full jitter under a ceiling that doubles up to the maximum", () => {
    const highest = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0.999999);
    assert.deepEqual(
      Array.from({ length: 6 }, () => highest.next()),
      [99, 199, 399, 799, 999, 999],
    );
    highest.reset();
    assert.equal(highest.next(), 99);
    const lowest = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0);
    assert.equal(lowest.next(), 0);
    const busy = new Backoff({ initialMs: 60_000, maxMs: 60_000 }, () => 0.999);
    assert.equal(busy.soon(), 999, "under a second the first time");
    assert.equal(busy.soon(), 59_940, "then the usual backoff");
  });
});

describe("what a close means", () => {
  test("token refusals ask for a new token", () => {
    for (const reason of ["invalid token", "token expired", "token revoked"]) {
      assert.equal(afterClose(1008, reason, null).kind, "new_token", reason);
    }
    assert.deepEqual(afterClose(1006, "", { status: 401, code: "token_revoked", retryAfterSecs: null }), {
      kind: "new_token",
      code: "token_revoked",
    });
  });

  test("a signed-out session stops; draining and slow clients go elsewhere at once", () => {
    assert.equal(afterClose(1008, "session revoked", null).kind, "stop");
    assert.equal(afterClose(1012, "server restarting, reconnect", null).kind, "soon");
    assert.equal(afterClose(1013, "too slow: send queue full", null).kind, "soon");
    assert.equal(afterClose(1006, "", { status: 503, code: "node_full", retryAfterSecs: null }).kind, "soon");
  });

  test("rate limits are waited out as the server says", () => {
    assert.deepEqual(afterClose(1006, "", { status: 429, code: "rate_limited", retryAfterSecs: 7 }), {
      kind: "after",
      ms: 7000,
      code: "rate_limited",
    });
  });

  test("everything else backs off", () => {
    assert.deepEqual(afterClose(1006, "", null), { kind: "backoff", code: "connection_lost" });
    assert.deepEqual(afterClose(1001, "heartbeat timeout", null), { kind: "backoff", code: "heartbeat_timeout" });
    assert.deepEqual(afterClose(1008, "too many invalid frames", null), { kind: "backoff", code: "too_many_invalid_frames" });
  });
});

function notification(id: number, read = false): Notification {
  return {
    id,
    user_id: "u",
    type: "generic",
    title: `t${id}`,
    message: "m",
    link: null,
    metadata: null,
    created_at: "2026-11-30T10:00:00.000000Z",
    read_at: read ? "2026-11-30T10:00:01.000000Z" : null,
  };
}

describe("the notification list", () => {
  test("newest first, each id once, capped as it grows", () => {
    const list = new NotificationList(3);
    assert.equal(list.add(notification(2), true), true);
    assert.equal(list.add(notification(5), true), true);
    assert.equal(list.add(notification(2), true), false, "a duplicate is dropped");
    assert.equal(list.add(notification(3), true), true);
    assert.equal(list.add(notification(4), true), true);
    assert.deepEqual(
      list.items.map((n) => n.id),
      [5, 4, 3],
    );
    assert.equal(list.add(notification(2), true), false, "an id seen before is not shown again");
    assert.equal(list.unreadCount, 4);
    assert.equal(list.highestId, 5);
  });

  test("read, read all and deletions move the unread count", () => {
    const list = new NotificationList(10);
    list.addPage([notification(3), notification(2), notification(1, true)]);
    list.unreadCount = 7; // the server's count includes older ones not held
    list.applyRead([2, 99], "now");
    assert.equal(list.unreadCount, 5);
    assert.equal(list.items.find((n) => n.id === 2)?.read_at, "now");
    list.applyDeleted([3]);
    assert.equal(list.unreadCount, 4);
    list.add(notification(4), true);
    list.add(notification(5), false);
    list.applyReadAll(4, "now");
    assert.equal(list.unreadCount, 1, "only what came after up_to is unread");
  });
});

describe("the notification list across reconnects and pages", () => {
  test("a page brings back what live growth trimmed", () => {
    const list = new NotificationList(2);
    for (const id of [1, 2, 3]) list.add(notification(id), true);
    assert.equal(list.trimmed, true);
    assert.deepEqual(
      list.items.map((n) => n.id),
      [3, 2],
    );
    assert.deepEqual(
      list.addPage([notification(1)]).map((n) => n.id),
      [1],
      "trimmed, not forgotten: a page inserts it",
    );
    assert.equal(list.add(notification(1), true), false, "but live it is still a duplicate");
  });

  test("a read already shown is not counted out twice", () => {
    const list = new NotificationList(10);
    list.addPage([notification(2), notification(1)]);
    list.unreadCount = 2;
    list.add({ ...notification(2), read_at: "then" }, true);
    assert.equal(list.items[0]?.read_at, "then", "a resent copy carries the read");
    list.unreadCount = 1; // the count the server sent with it
    list.applyRead([2], "now");
    assert.equal(list.unreadCount, 1);
  });

  test("a fresh newest page reconciles reads and deletions made elsewhere", () => {
    const list = new NotificationList(10);
    list.addPage([notification(4), notification(3), notification(2), notification(1)]);
    const changed = list.reconcile([{ ...notification(4), read_at: "x" }, notification(2)]);
    assert.equal(changed, true);
    assert.deepEqual(
      list.items.map((n) => [n.id, n.read_at]),
      [
        [4, "x"],
        [2, null],
        [1, null],
      ],
      "3 was deleted; 1 is below the page and stays",
    );
  });

  test("a cut-short resume drops what lies beyond its gap", () => {
    const list = new NotificationList(10);
    list.addPage([notification(2), notification(1)]);
    for (const id of [600, 601]) list.add(notification(id), true);
    list.dropOlderThan(600);
    assert.deepEqual(
      list.items.map((n) => n.id),
      [601, 600],
    );
    assert.equal(list.trimmed, true);
  });
});

describe("topics", () => {
  const event = (id: string): TopicEvent => ({ type: "event", topic: "room", event: "e", data: id, id, sent_at: "t" });

  test("an unsubscribe answered after a new subscribe does not drop the topic", () => {
    const topics = new Topics();
    const handler = () => undefined;
    topics.add("room", handler);
    assert.equal(topics.remove("room", handler), true);
    assert.equal(topics.add("room", handler), true);
    assert.equal(topics.unsubscribed("room"), false, "the answer to the unsubscribe");
    assert.equal(topics.wants("room"), true);
    assert.equal(topics.unsubscribed("room"), true, "the server dropping it");
    assert.equal(topics.wants("room"), false);
  });

  test("a handler added later gets the snapshot; each event once; a throwing handler stops nothing", async () => {
    const thrown: unknown[] = [];
    const topics = new Topics((error) => thrown.push(error));
    const first: string[] = [];
    const later: string[] = [];
    topics.add("room", () => {
      throw new Error("a broken handler");
    });
    topics.add("room", (e) => first.push(e.id));
    topics.subscribed("room", event("s1"));
    topics.add("room", (e) => later.push(e.id));
    await Promise.resolve();
    assert.deepEqual(later, ["s1"]);
    topics.subscribed("room", event("s1")); // resubscribed after a reconnect
    topics.dispatch(event("e2"));
    topics.dispatch(event("e2"));
    assert.deepEqual(first, ["s1", "e2"]);
    assert.deepEqual(later, ["s1", "e2"]);
    assert.equal(thrown.length, 2, "the broken handler's errors, reported");
    assert.throws(() => topics.add("not a topic", () => undefined), { code: "invalid_topic" });
  });
});

describe("tokens", () => {
  const jwt = (claims: object) =>
    `${Buffer.from("{}").toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;

  test("the expiry of a JWT is read; an opaque token has none", () => {
    assert.equal(expiryOf(jwt({ sub: "é", exp: 1795545421 })), 1795545421);
    assert.equal(expiryOf("opaque"), null);
    assert.equal(expiryOf("a.!!!.c"), null);
    assert.equal(expiryOf(jwt({ exp: "soon" })), null);
  });

  test("a held token is reused until its margin, and refreshed before it expires", async () => {
    let now = 1_000_000;
    let calls = 0;
    const iat = 5000; // the issuer's clock: far from this device's
    const tokens = new Tokens(() => jwt({ iat, exp: iat + 100, n: ++calls }), 10, 30, () => now);
    await tokens.current();
    await tokens.current();
    assert.equal(calls, 1);
    assert.equal(tokens.refreshInMs(), 70_000, "100 s of life counted from its arrival, 30 s lead");
    now += 91_000;
    await tokens.current();
    assert.equal(calls, 2, "inside the margin: a new one");
    tokens.forget();
    await Promise.all([tokens.current(), tokens.fresh()]);
    assert.equal(calls, 3, "after a refusal: one new one, however many ask at once");
  });

  test("a short life is refreshed halfway", async () => {
    const tokens = new Tokens(() => jwt({ iat: 10, exp: 20 }), 10, 60, () => 0);
    await tokens.current();
    assert.equal(tokens.refreshInMs(), 5000);
  });
});

describe("pacing", () => {
  test("a burst goes at once, the rest in order at the rate", async () => {
    const written: string[] = [];
    let allWritten: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (allWritten = resolve));
    const pacer = new Pacer(
      (frame) => {
        written.push(frame);
        if (written.length === 6) allWritten();
      },
      50,
      3,
    );
    const started = Date.now();
    for (let i = 0; i < 6; i++) pacer.send(String(i));
    assert.deepEqual(written, ["0", "1", "2"]);
    assert.equal(pacer.waiting, 3);
    await done;
    assert.deepEqual(written, ["0", "1", "2", "3", "4", "5"]);
    assert.ok(Date.now() - started >= 40, "three more at 50/s take about 60 ms");
  });
});
