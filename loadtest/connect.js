// Ramp to CONNECTIONS concurrent authenticated WebSocket connections through
// nginx and hold them. Each VU opens CONNS_PER_VU sockets, so thousands of
// connections need only tens of VUs.
//
//   TARGET (http://127.0.0.1:8080)  JWT_SECRET (required)
//   CONNECTIONS (1000)  CONNS_PER_VU (50)  RAMP_SECS (10)  HOLD_SECS (20)
//
//   k6 run -e JWT_SECRET=... -e CONNECTIONS=5000 loadtest/connect.js
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout } from 'k6/timers';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { env, intEnv, required, targets, token } from './lib.js';

const CONNECTIONS = intEnv('CONNECTIONS', 1000);
const PER_VU = intEnv('CONNS_PER_VU', 50);
const RAMP_SECS = intEnv('RAMP_SECS', 10);
const HOLD_SECS = intEnv('HOLD_SECS', 20);
const VUS = Math.ceil(CONNECTIONS / PER_VU);
const SECRET = required('JWT_SECRET');
const { ws: WS } = targets();

const welcomeTime = new Trend('ws_welcome_time', true);
const connected = new Counter('ws_connected');
const failures = new Counter('ws_failures');
const closedEarly = new Counter('ws_closed_early');

export const options = {
  scenarios: {
    hold: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: 1,
      maxDuration: `${RAMP_SECS + HOLD_SECS + 60}s`,
    },
  },
  thresholds: {
    ws_failures: ['count==0'],
    ws_closed_early: ['count==0'],
    ws_connected: [`count>=${CONNECTIONS}`],
    ws_welcome_time: ['p(95)<1000'],
  },
};

// One run id for every VU (each VU evaluates this file on its own).
export function setup() {
  return { run: env('RUN_ID', `${Date.now()}`) };
}

export default function (data) {
  const vu = exec.scenario.iterationInTest;
  const first = vu * PER_VU;
  const count = Math.min(PER_VU, CONNECTIONS - first);
  for (let i = 0; i < count; i++) {
    const n = first + i;
    // Spread connects evenly over the ramp.
    const delay = (n / CONNECTIONS) * RAMP_SECS * 1000;
    setTimeout(() => open(`k6-${data.run}-${n}`, RAMP_SECS * 1000 - delay + HOLD_SECS * 1000), delay);
  }
}

function open(user, holdMs) {
  const started = Date.now();
  let welcomed = false;
  let closing = false;
  const ws = new WebSocket(`${WS}/ws?token=${token(SECRET, user)}`);
  ws.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === 'welcome' && !welcomed) {
      welcomed = true;
      welcomeTime.add(Date.now() - started);
      connected.add(1);
      setTimeout(() => {
        closing = true;
        ws.close();
      }, holdMs);
    }
  };
  ws.onerror = () => failures.add(1);
  ws.onclose = () => {
    if (!welcomed) {
      failures.add(1);
    } else if (!closing) {
      closedEarly.add(1);
    }
  };
}
