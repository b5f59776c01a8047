// USERS connected users; a sender posts notifications at RATE per second to
// random users, one POST per notification. Every client records the delay
// from the send time (carried in the notification's metadata) to receipt.
// Fails when a notification is lost or duplicated, or when delivery is slow.
//
//   TARGET (http://127.0.0.1:8080)  JWT_SECRET, WEBHOOK_API_KEYS (required)
//   USERS (2000)  CONNS_PER_VU (100)  RATE (200)  DURATION (30)  seconds
//   CONNECT_SECS (10) to connect everyone before sending; GRACE_SECS (5)
//   P95_MS (50)  P99_MS (100)  delivery-delay thresholds
//
//   k6 run -e JWT_SECRET=... -e WEBHOOK_API_KEYS=... -e RATE=1000 loadtest/fanout.js
import http from 'k6/http';
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout } from 'k6/timers';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { apiKey, env, intEnv, required, targets, token } from './lib.js';

const USERS = intEnv('USERS', 2000);
const PER_VU = intEnv('CONNS_PER_VU', 100);
const RATE = intEnv('RATE', 200);
const DURATION = intEnv('DURATION', 30);
const CONNECT_SECS = intEnv('CONNECT_SECS', 10);
const GRACE_SECS = intEnv('GRACE_SECS', 5);
const CLIENT_VUS = Math.ceil(USERS / PER_VU);
const SECRET = required('JWT_SECRET');
const KEY = apiKey();
const { http: HTTP, ws: WS } = targets();
const EXPECTED = RATE * DURATION;

const delay = new Trend('delivery_delay', true);
const sent = new Counter('notifications_sent');
const received = new Counter('notifications_received');
const duplicates = new Counter('notifications_duplicated');
const sendFailures = new Counter('send_failures');
const wsFailures = new Counter('ws_failures');
const connected = new Counter('ws_connected');
const lateConnects = new Counter('ws_connected_late');
const missing = new Counter('notifications_missing');

export const options = {
  scenarios: {
    clients: {
      executor: 'per-vu-iterations',
      exec: 'clients',
      vus: CLIENT_VUS,
      iterations: 1,
      maxDuration: `${CONNECT_SECS + DURATION + GRACE_SECS + 60}s`,
    },
    sender: {
      executor: 'constant-arrival-rate',
      exec: 'send',
      startTime: `${CONNECT_SECS}s`,
      rate: RATE,
      timeUnit: '1s',
      duration: `${DURATION}s`,
      preAllocatedVUs: Math.max(20, Math.ceil(RATE / 50)),
      maxVUs: Math.max(100, Math.ceil(RATE / 10)),
    },
  },
  thresholds: {
    notifications_sent: [`count==${EXPECTED}`],
    notifications_received: [`count==${EXPECTED}`],
    notifications_duplicated: ['count==0'],
    send_failures: ['count==0'],
    ws_failures: ['count==0'],
    ws_connected: [`count==${USERS}`],
    // Sending starts at CONNECT_SECS; a client welcomed later would miss
    // notifications by design (fresh clients get live events only).
    ws_connected_late: ['count==0'],
    notifications_missing: ['count==0'],
    dropped_iterations: ['count==0'],
    delivery_delay: [`p(95)<${env('P95_MS', '50')}`, `p(99)<${env('P99_MS', '100')}`],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max'],
};

// One run id and start time for every VU (each VU evaluates this file on
// its own).
export function setup() {
  return { run: env('RUN_ID', `${Date.now()}`), start: Date.now() };
}

function user(run, n) {
  return `k6-${run}-${n}`;
}

export function clients(data) {
  // VU ids are shared with the sender scenario; the iteration number is
  // this scenario's own (one iteration per VU).
  const first = exec.scenario.iterationInTest * PER_VU;
  const count = Math.min(PER_VU, USERS - first);
  const holdMs = (DURATION + GRACE_SECS) * 1000;
  for (let i = 0; i < count; i++) {
    const n = first + i;
    setTimeout(() => open(data, user(data.run, n), CONNECT_SECS * 1000 - (n / USERS) * CONNECT_SECS * 500 + holdMs),
      (n / USERS) * CONNECT_SECS * 500);
  }
}

function open(data, name, holdMs) {
  const seen = new Set();
  let welcomed = false;
  let welcomedAt = 0;
  let closing = false;
  const ws = new WebSocket(`${WS}/ws?token=${token(SECRET, name)}`);
  ws.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === 'welcome') {
      welcomed = true;
      welcomedAt = Date.now();
      connected.add(1);
      if (welcomedAt > data.start + CONNECT_SECS * 1000) lateConnects.add(1);
      setTimeout(() => {
        closing = true;
        ws.close();
      }, holdMs);
    } else if (frame.type === 'notification') {
      const n = frame.notification;
      if (seen.has(n.id)) {
        duplicates.add(1);
        return;
      }
      seen.add(n.id);
      received.add(1);
      delay.add(Date.now() - n.metadata.sent_at);
    }
  };
  ws.onerror = (e) => {
    // k6 reports writes racing its own close as errors; those are not ours.
    if (closing) return;
    wsFailures.add(1);
    console.warn(`${name}: socket error ${e.error}`);
  };
  ws.onclose = () => {
    if (!welcomed) {
      wsFailures.add(1);
      return;
    }
    checkAgainstStore(name, seen, welcomedAt);
  };
}

// MySQL is the source of truth: every notification stored for this user
// after the client was welcomed must have arrived on the socket.
function checkAgainstStore(name, seen, since) {
  const auth = { headers: { Authorization: `Bearer ${token(SECRET, name)}` }, tags: { name: 'feed' } };
  let before = '';
  for (;;) {
    const response = http.get(`${HTTP}/api/notifications?limit=100${before}`, auth);
    if (response.status !== 200) {
      sendFailures.add(1);
      return;
    }
    const page = JSON.parse(response.body);
    for (const n of page.notifications) {
      if (Date.parse(n.created_at) <= since) return;
      if (!seen.has(n.id)) {
        missing.add(1);
        console.warn(`${name}: notification ${n.id} (${n.created_at}) never arrived`);
      }
    }
    if (page.next_cursor === null) return;
    before = `&before=${page.next_cursor}`;
  }
}

export function send(data) {
  // The arrival-rate executor may start an iteration or two beyond
  // RATE x DURATION; sending exactly that many keeps the accounting exact.
  if (exec.scenario.iterationInTest >= EXPECTED) {
    return;
  }
  const recipient = user(data.run, Math.floor(Math.random() * USERS));
  const body = JSON.stringify({
    recipients: [recipient],
    type: 'loadtest',
    title: 'Load test',
    message: 'fan-out check',
    metadata: { sent_at: Date.now() },
  });
  const response = http.post(`${HTTP}/v1/notifications`, body, {
    headers: { 'Content-Type': 'application/json', 'X-Api-Key': KEY },
    tags: { name: 'send' },
  });
  if (response.status === 202) {
    sent.add(1);
  } else {
    sendFailures.add(1);
  }
}

export function handleSummary(data) {
  const count = (name) => (data.metrics[name] ? data.metrics[name].values.count : 0);
  const trend = data.metrics.delivery_delay ? data.metrics.delivery_delay.values : {};
  const fmt = (v) => (v === undefined ? '-' : v.toFixed(1));
  const lines = [
    `fanout: users=${USERS} rate=${RATE}/s duration=${DURATION}s`,
    `  sent=${count('notifications_sent')} received=${count('notifications_received')} ` +
      `lost=${count('notifications_sent') - count('notifications_received')} ` +
      `duplicated=${count('notifications_duplicated')} send_failures=${count('send_failures')} ` +
      `ws_failures=${count('ws_failures')} connected=${count('ws_connected')} ` +
      `connected_late=${count('ws_connected_late')} missing_vs_mysql=${count('notifications_missing')}`,
    `  delivery ms: p50=${fmt(trend.med)} p95=${fmt(trend['p(95)'])} p99=${fmt(trend['p(99)'])} max=${fmt(trend.max)}`,
    '',
  ];
  return { stdout: lines.join('\n') };
}
