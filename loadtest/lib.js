// Helpers shared by the k6 scripts: configuration from the environment and
// HS256 tokens signed with the cluster's JWT_SECRET.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';

export function env(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
}

export function required(name) {
  const value = __ENV[name];
  if (!value) {
    throw new Error(`${name} must be set`);
  }
  return value;
}

export function intEnv(name, fallback) {
  return parseInt(env(name, String(fallback)), 10);
}

// The WebSocket and HTTP bases derived from TARGET (default: local nginx).
export function targets() {
  const target = env('TARGET', 'http://127.0.0.1:8080').replace(/\/$/, '');
  return { http: target, ws: target.replace(/^http/, 'ws') };
}

export function token(secret, user, ttlSecs) {
  const header = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');
  const exp = Math.floor(Date.now() / 1000) + (ttlSecs || 3600);
  const payload = encoding.b64encode(JSON.stringify({ sub: user, exp }), 'rawurl');
  const signature = crypto.hmac('sha256', secret, `${header}.${payload}`, 'base64rawurl');
  return `${header}.${payload}.${signature}`;
}

// API key: the first of WEBHOOK_API_KEYS (same variable as the api).
export function apiKey() {
  return required('WEBHOOK_API_KEYS').split(',')[0].trim();
}
