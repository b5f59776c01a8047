// NotifyClient against a real cluster (nginx, api, three gateways, MySQL,
// Redis) started by clients/with-cluster.
import assert from "node:assert/strict";
import { after, afterEach, describe, test } from "node:test";

import type { NotifyClient } from "../src/index.js";
import {
  asUser,
  clientOf,
  gatedSocket,
  killGateway,
  newUser,
  next,
  notify,
  restoreCluster,
  server,
  sign,
  stateBecomes,
  until,
} from "./cluster.js";

const running: NotifyClient[] = [];
function track(client: NotifyClient): NotifyClient {
  running.push(client);
  return client;
}
after(() => {
  for (const client of running) client.stop();
});

describe("delivery", () => {
  test("a notification sent through nginx arrives, is counted and acknowledged", async () => {
    const user = newUser("ann");
    const client = track(clientOf(user));
    await client.start();
    assert.equal(client.status, "online");
    assert.equal(client.unreadCount, 0);

    const arrived = next(client, "notification");
    const id = await notify(user, "Hello");
    const [notification] = await arrived;
    assert.equal(notification.id, id);
    assert.equal(notification.title, "Hello");
    assert.equal(client.unreadCount, 1);
    assert.deepEqual(
      client.notifications.map((n) => n.id),
      [id],
    );
    // The client acknowledged it: its sender sees it delivered.
    await stateBecomes(id, "delivered");
  });

  test("the first page comes from the feed, older pages on demand", async () => {
    const user = newUser("bo");
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push(await notify(user, `old ${i}`));
    const client = track(clientOf(user, { pageSize: 2 }));
    const announced: number[] = [];
    client.on("notification", (n) => announced.push(n.id));
    await client.start();
    // The resume after the first page resends what was created within
    // seconds before its newest (all five here): older ones stay feed. A
    // live one after it shows the batch was handled.
    const arrived = next(client, "notification");
    const live = await notify(user, "live");
    await arrived;
    assert.deepEqual(announced, [live], "only the live one is news");
    assert.deepEqual(
      client.notifications.map((n) => n.id),
      [live, ids[4], ids[3]],
    );
    assert.equal(client.unreadCount, 6);
    assert.equal(await client.loadMore(), true);
    assert.equal(await client.loadMore(), false);
    assert.deepEqual(
      client.notifications.map((n) => n.id),
      [live, ...ids].sort((a, b) => b - a),
    );
    assert.equal(client.unreadCount, 6, "older pages are already in the count");
  });
});

describe("devices stay in step", () => {
  test("read, read all and delete on one device show on the other", async () => {
    const user = newUser("cy");
    const phone = track(clientOf(user));
    const laptop = track(clientOf(user));
    await Promise.all([phone.start(), laptop.start()]);
    const both = Promise.all([next(phone, "notification"), next(laptop, "notification")]);
    const first = await notify(user, "one");
    await both;
    const seconds = Promise.all([
      until(phone, () => phone.notifications.length === 3, "three on the phone"),
      until(laptop, () => laptop.notifications.length === 3, "three on the laptop"),
    ]);
    const second = await notify(user, "two");
    const third = await notify(user, "three");
    await seconds;
    assert.equal(laptop.unreadCount, 3);

    const read = next(laptop, "read");
    await phone.markRead([first]);
    assert.deepEqual((await read)[0], [first]);
    assert.equal(laptop.unreadCount, 2);
    assert.notEqual(laptop.notifications.find((n) => n.id === first)?.read_at, null);

    const gone = next(phone, "deleted");
    await laptop.delete(second);
    assert.deepEqual((await gone)[0], [second]);
    assert.deepEqual(
      phone.notifications.map((n) => n.id),
      [third, first],
    );
    assert.equal(phone.unreadCount, 1);

    const allRead = next(phone, "read_all");
    await laptop.markAllRead();
    assert.equal((await allRead)[0], third);
    assert.equal(phone.unreadCount, 0);
    assert.equal(laptop.unreadCount, 0);
    assert.ok(phone.notifications.every((n) => n.read_at !== null));
  });
});

describe("reconnecting", () => {
  // Each test kills a gateway: the next one starts with all three again.
  afterEach(restoreCluster);

  test("a gateway killed mid-stream: the client moves to another node and misses nothing, twice nothing", async () => {
    const user = newUser("di");
    const client = track(clientOf(user));
    const seen = new Map<number, number>();
    client.on("notification", (n) => seen.set(n.id, (seen.get(n.id) ?? 0) + 1));
    await client.start();
    const firstNode = client.session?.node ?? "";

    const sent: number[] = [];
    const sending = (async () => {
      for (let i = 0; i < 40; i++) sent.push(await notify(user, `n${i}`));
    })();
    await until(client, () => seen.size >= 10, "the first ten");
    const backOnline = next(client, "status", (status) => status === "online");
    killGateway(firstNode);
    const sentBeforeKill = sent.length;
    await backOnline;
    assert.ok(sentBeforeKill < 40, "the gateway died while notifications were being sent");
    assert.notEqual(client.session?.node, firstNode);
    await sending;
    await until(client, () => sent.every((id) => seen.has(id)), "every notification sent");
    assert.deepEqual(
      [...seen.entries()].filter(([, times]) => times !== 1),
      [],
      "each notification is given to the app once",
    );
    assert.deepEqual(
      client.notifications.map((n) => n.id),
      [...sent].sort((a, b) => b - a),
    );
    assert.equal(client.unreadCount, 40);
  });

  test("reads and deletions made while a device was away show once it is back", async () => {
    const user = newUser("eli");
    const gated = gatedSocket();
    const phone = track(clientOf(user, { WebSocket: gated.Socket }));
    await phone.start();
    const all = until(phone, () => phone.notifications.length === 3, "three on the phone");
    const [first, second, third] = [await notify(user, "a"), await notify(user, "b"), await notify(user, "c")];
    await all;

    gated.hold();
    const away = next(phone, "status", (status) => status === "offline");
    killGateway(phone.session?.node ?? "");
    await away;
    // Another device, while the phone cannot connect: its events reach nobody.
    assert.equal(await asUser(user, "PUT", `/api/notifications/${first}/read`), 200);
    assert.equal(await asUser(user, "DELETE", `/api/notifications/${second}`), 204);

    gated.release();
    await until(
      phone,
      () => phone.notifications.map((n) => n.id).join() === [third, first].join() && phone.notifications[1]?.read_at !== null,
      "the phone to show the read and the deletion",
    );
    assert.equal(phone.unreadCount, 1);
    assert.equal(phone.status, "online");
  });

  test("a draining gateway (SIGTERM) sends its clients elsewhere at once", async () => {
    const user = newUser("dot");
    const client = track(clientOf(user, { backoff: { initialMs: 60_000, maxMs: 60_000 } }));
    await client.start();
    const firstNode = client.session?.node ?? "";
    const lost = next(client, "status", (status) => status === "offline");
    const backOnline = next(client, "status", (status) => status === "online");
    killGateway(firstNode, "SIGTERM");
    const [, detail] = await lost;
    assert.equal(detail.code, "server_restarting");
    // Not the minute-long backoff: a draining node means "go elsewhere now".
    assert.ok((detail.retryInMs ?? Infinity) < 60_000, `retry in ${detail.retryInMs} ms`);
    await backOnline;
    assert.notEqual(client.session?.node, firstNode);
    const arrived = next(client, "notification");
    const id = await notify(user, "after the drain");
    assert.equal((await arrived)[0].id, id);
  });
});

describe("tokens", () => {
  test("a token about to expire is refreshed on the open connection", async () => {
    const user = newUser("ed");
    const issued: number[] = [];
    let thirdIssued: () => void = () => undefined;
    const third = new Promise<void>((resolve) => (thirdIssued = resolve));
    const client = track(
      clientOf(user, {
        // 8 s tokens refreshed 2 s before they expire: the third token is
        // asked for after the first one expired.
        refreshBeforeSecs: 2,
        token: () => {
          issued.push(Date.now());
          if (issued.length === 3) thirdIssued();
          return sign(user, { ttlSecs: 8 });
        },
      }),
    );
    const lost: string[] = [];
    client.on("status", (status, detail) => {
      if (status === "offline") lost.push(detail.code ?? "");
    });
    await client.start();
    const session = client.session?.id;
    await third;
    assert.ok(Date.now() > (issued[0] ?? 0) + 8000, "the first token has expired");
    assert.deepEqual(lost, [], "the connection was never lost");
    assert.equal(client.session?.id, session);
    const arrived = next(client, "notification");
    const id = await notify(user, "still here");
    assert.equal((await arrived)[0].id, id);
  });

  test("a refused token is asked for again once, and a good one connects", async () => {
    const user = newUser("fay");
    let calls = 0;
    const client = track(clientOf(user, { token: () => (++calls === 1 ? "not-a-token" : sign(user)) }));
    await client.start();
    assert.equal(calls, 2);
    assert.equal(client.status, "online");
  });

  test("a revoked token stops the client instead of reconnecting", async () => {
    const user = newUser("gus");
    const token = sign(user);
    let calls = 0;
    const client = track(
      clientOf(user, {
        token: () => {
          calls += 1;
          return token;
        },
      }),
    );
    await client.start();
    assert.equal(calls, 1);
    const stopped = next(client, "status", (status) => status === "stopped");
    const errors: string[] = [];
    client.on("error", (error) => errors.push(error.code));
    const reply = await server("POST", `/v1/users/${encodeURIComponent(user)}/disconnect`);
    assert.equal(reply.status, 200);
    const [, detail] = await stopped;
    assert.equal(detail.code, "token_revoked");
    assert.deepEqual(errors, ["token_revoked"]);
    assert.equal(calls, 2, "the callback was asked once after the refusal");
    assert.equal(client.lastError?.fatal, true);
    assert.equal(client.session, null);
    await assert.rejects(client.start(), { code: "stopped" });
  });
});

describe("topics and chat", () => {
  test("a topic's snapshot and events reach the handler once each", async () => {
    const user = newUser("hal");
    const topic = `room-${newUser("t")}`;
    const client = track(clientOf(user));
    await client.start();
    const retained = await server("POST", "/v1/events", { topic, event: "state", data: { n: 1 }, retain: true });
    assert.equal(retained.status, 202);
    const got: unknown[] = [];
    let resolveSecond: () => void = () => undefined;
    const second = new Promise<void>((resolve) => (resolveSecond = resolve));
    const first = new Promise<void>((resolve) =>
      client.subscribe(topic, (event) => {
        got.push(event.data);
        if (got.length === 1) resolve();
        if (got.length === 2) resolveSecond();
      }),
    );
    await first;
    assert.deepEqual(got, [{ n: 1 }]);
    const live = await server("POST", "/v1/events", { topic, event: "state", data: { n: 2 } });
    assert.equal(live.status, 202);
    await second;
    assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
  });

  test("a chat message is stored once and reaches the other member", async () => {
    const [alice, bob] = [newUser("alice"), newUser("bob")];
    const a = track(clientOf(alice));
    const b = track(clientOf(bob));
    await Promise.all([a.start(), b.start()]);
    const conversation = await a.openDirect(bob);
    const received = next(b, "message");
    const message = await a.sendMessage(conversation.id, "Lunch?", { clientId: "c-1" });
    assert.equal(message.body, "Lunch?");
    assert.equal((await received)[0].id, message.id);
    // The same client_id again: the stored message, nothing new.
    const again = await a.sendMessage(conversation.id, "Lunch?", { clientId: "c-1" });
    assert.equal(again.id, message.id);
    const history = await b.messages(conversation.id);
    assert.deepEqual(
      history.messages.map((m) => m.id),
      [message.id],
    );
    await assert.rejects(a.sendMessage(conversation.id, "   "), { code: "empty_message" });
  });
});
