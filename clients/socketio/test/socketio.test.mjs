// Socket.IO frontends against the gateways, with the real socket.io-client
// through nginx (run through clients/with-cluster: `npm test`): what an app
// written for a Socket.IO server sees after changing only its URL and
// connect options.
import assert from "node:assert/strict";
import { execSync } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, afterEach, describe, test } from "node:test";

import { io } from "socket.io-client";

const { NOTIFY_URL, NOTIFY_API_KEY, NOTIFY_JWT_SECRET, NOTIFY_CLUSTER, NOTIFY_CLUSTER_UP } = process.env;
assert.ok(NOTIFY_URL && NOTIFY_API_KEY && NOTIFY_JWT_SECRET && NOTIFY_CLUSTER, "run through clients/with-cluster (npm test)");
const TIMEOUT = 15_000;

const sockets = [];
after(() => {
  for (const socket of sockets) socket.disconnect();
});

function newUser(name) {
  return `${name}-${randomBytes(6).toString("hex")}`;
}

function sign(user, { ttlSecs = 3600, iat } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const header = encode({ alg: "HS256", typ: "JWT" });
  const claims = encode({ sub: user, iat: iat ?? now, exp: now + ttlSecs, jti: randomBytes(16).toString("hex") });
  const signature = createHmac("sha256", NOTIFY_JWT_SECRET).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

/** The three-line change of an app: the URL, the websocket transport, the token in `auth`. */
function connect(auth, options = {}) {
  const socket = io(NOTIFY_URL, { transports: ["websocket"], auth, reconnectionDelay: 100, reconnectionDelayMax: 500, ...options });
  sockets.push(socket);
  return socket;
}

/** The first `name` event that `accept`s, with its arguments. */
function once(socket, name, accept = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(name, listener);
      reject(new Error(`no ${name} within ${TIMEOUT} ms`));
    }, TIMEOUT);
    function listener(...args) {
      if (!accept(...args)) return;
      clearTimeout(timer);
      socket.off(name, listener);
      resolve(args);
    }
    socket.on(name, listener);
  });
}

/** Connected, with the `welcome` event that follows the CONNECT (its node). */
async function connected(socket) {
  const [[welcome]] = await Promise.all([once(socket, "welcome"), once(socket, "connect")]);
  return welcome;
}

/** The single-recipient form existing senders use. */
async function webhook(user, title) {
  const response = await fetch(`${NOTIFY_URL}/webhook/notify`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": NOTIFY_API_KEY },
    body: JSON.stringify({ recipientId: user, title, message: `${title}: body` }),
  });
  const body = await response.json();
  assert.equal(response.status, 202, JSON.stringify(body));
  return body.id;
}

function killGateway(node, signal) {
  const number = /^gw-(\d+)/.exec(node)?.[1];
  assert.ok(number, `node ${node}`);
  const pid = Number(readFileSync(`${NOTIFY_CLUSTER}/gateway-${number}.pid`, "utf8").trim());
  process.kill(pid, signal);
}

describe("socket.io-client on the gateways", () => {
  test("a notification posted through /webhook/notify reaches both devices, on any node", async () => {
    const user = newUser("ann");
    const token = sign(user);
    const phone = connect({ token });
    const laptop = connect({ token });
    const [phoneWelcome] = await Promise.all([connected(phone), connected(laptop)]);
    assert.match(phoneWelcome.node, /^gw-\d+/);
    assert.equal(phoneWelcome.unread_count, 0);
    const both = Promise.all([once(phone, "new_notification"), once(laptop, "new_notification")]);
    const id = await webhook(user, "Shipped");
    const [[onPhone], [onLaptop]] = await both;
    assert.equal(onPhone.id, id);
    assert.equal(onPhone.title, "Shipped");
    assert.equal(onPhone.user_id, user);
    assert.deepEqual(onLaptop, onPhone);

    // Read with an acknowledgement; the other device follows.
    const synced = once(laptop, "notification_read");
    assert.deepEqual(await phone.timeout(TIMEOUT).emitWithAck("mark_notification_read", id), { success: true });
    assert.deepEqual((await synced)[0], { ids: [id] });

    const delivered = once(laptop, "new_notification");
    const second = await webhook(user, "Delivered");
    assert.equal((await delivered)[0].id, second);
    const allRead = once(laptop, "all_notifications_read");
    assert.deepEqual(await phone.timeout(TIMEOUT).emitWithAck("mark_all_read"), { success: true });
    assert.deepEqual((await allRead)[0], { up_to: second });

    // A refused request says why in its acknowledgement.
    const refused = await phone.timeout(TIMEOUT).emitWithAck("mark_notification_read", "forty-two");
    assert.equal(refused.success, false);
    assert.equal(refused.error, "invalid_frame");
  });

  test("a bad, expired or revoked token gets connect_error with the native code", async () => {
    const user = newUser("bo");
    const cases = [
      ["not-a-token", "invalid_token"],
      [sign(user, { ttlSecs: -10 }), "token_expired"],
    ];
    for (const [token, code] of cases) {
      const socket = connect({ token }, { reconnection: false });
      const [error] = await once(socket, "connect_error");
      assert.equal(error.message, code);
      assert.equal(socket.connected, false);
    }
    const revoked = sign(user);
    const response = await fetch(`${NOTIFY_URL}/v1/users/${user}/disconnect`, {
      method: "POST",
      headers: { authorization: `Bearer ${NOTIFY_API_KEY}` },
    });
    assert.equal(response.status, 200);
    const socket = connect({ token: revoked }, { reconnection: false });
    assert.equal((await once(socket, "connect_error"))[0].message, "token_revoked");
    const missing = connect({}, { reconnection: false });
    assert.equal((await once(missing, "connect_error"))[0].message, "auth_required");
  });

  test("the token may come in the query string, and topics map to subscribe:<topic>", async () => {
    const user = newUser("cy");
    const socket = connect(undefined, { query: { token: sign(user) } });
    await connected(socket);
    const topic = `room-${randomBytes(4).toString("hex")}`;
    const retained = await fetch(`${NOTIFY_URL}/v1/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${NOTIFY_API_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ topic, event: "room:state", data: { open: true }, retain: true }),
    });
    assert.equal(retained.status, 202);
    const snapshot = once(socket, "room:state");
    assert.deepEqual(await socket.timeout(TIMEOUT).emitWithAck(`subscribe:${topic}`), { success: true });
    const [data, meta] = await snapshot;
    assert.deepEqual(data, { open: true });
    assert.equal(meta.topic, topic);
    assert.deepEqual(await socket.timeout(TIMEOUT).emitWithAck("subscribe:not a topic"), {
      success: false,
      error: "invalid_topic",
      message: "a topic is 1 to 128 characters of A-Z a-z 0-9 _ . : -",
    });
  });

  test("HTTP long-polling is refused with a code that says to use the websocket transport", async () => {
    const response = await fetch(`${NOTIFY_URL}/socket.io/?EIO=4&transport=polling`);
    assert.equal(response.status, 400);
    assert.equal((await response.json()).error.code, "transport_unsupported");
  });
});

describe("nodes going away", () => {
  afterEach(() => execSync(NOTIFY_CLUSTER_UP, { stdio: "ignore" }));

  test("a gateway killed with SIGKILL: the client reconnects and resumes after its last id, nothing lost or twice", async () => {
    const user = newUser("di");
    const token = sign(user);
    const seen = new Map();
    let last = 0;
    let waiter = null;
    /** Resolves once every id in `ids` has arrived. */
    const allOf = (ids) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`missing: ${ids.filter((id) => !seen.has(id))}`)), TIMEOUT);
        waiter = () => {
          if (!ids.every((id) => seen.has(id))) return;
          clearTimeout(timer);
          resolve();
        };
        waiter();
      });
    // `auth` as a function: called at every (re)connect, with the last id held.
    const socket = connect((cb) => cb({ token, after: last }));
    socket.on("new_notification", (n) => {
      seen.set(n.id, (seen.get(n.id) ?? 0) + 1);
      last = Math.max(last, n.id);
      waiter?.();
    });
    const { node } = await connected(socket);
    const sent = [];
    for (let i = 0; i < 5; i++) sent.push(await webhook(user, `before ${i}`));
    await allOf([...sent]);
    const lost = once(socket, "disconnect");
    killGateway(node, "SIGKILL");
    const [reason] = await lost;
    assert.equal(reason, "transport close");
    // Sent while the client is away: only the resume can bring them.
    for (let i = 0; i < 5; i++) sent.push(await webhook(user, `away ${i}`));
    const [welcome] = await once(socket, "welcome");
    assert.notEqual(welcome.node, node);
    await allOf([...sent]);
    assert.deepEqual([...seen.values()].filter((n) => n !== 1), [], "each notification once");
    assert.equal(seen.size, 10);
  });

  test("a gateway drained with SIGTERM: its clients reconnect elsewhere", async () => {
    const user = newUser("eve");
    const socket = connect({ token: sign(user) });
    const { node } = await connected(socket);
    const lost = once(socket, "disconnect");
    killGateway(node, "SIGTERM");
    assert.equal((await lost)[0], "transport close", "not a server disconnect: the client reconnects");
    const [welcome] = await once(socket, "welcome");
    assert.notEqual(welcome.node, node);
    const id = await webhook(user, "after the drain");
    assert.equal((await once(socket, "new_notification"))[0].id, id);
  });
});
