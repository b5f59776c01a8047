#!/usr/bin/env bash
# A short fan-out run through a real local cluster (nginx, api, three
# gateways): a few hundred connected users, a few seconds of sending, and a
# failure if any notification is lost, duplicated or slow. Runs on its own
# ports, database and channel prefix, so it does not disturb a cluster
# started with scripts/cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

export NGINX_PORT=${SMOKE_NGINX_PORT:-18080} API_PORT=${SMOKE_API_PORT:-18081}
export GATEWAY_PORTS=${SMOKE_GATEWAY_PORTS:-"18082 18083 18084"}
export CLUSTER_REDIS_PORT=${SMOKE_REDIS_PORT:-18085}
export CLUSTER_DIR=.cluster-smoke
export DATABASE_URL=mysql://root@127.0.0.1:3306/notify_smoke
export CHANNEL_PREFIX=smoke:
export RUST_LOG=${RUST_LOG:-warn}

finish() {
  scripts/cluster down >/dev/null || true
  mysql -h127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS notify_smoke' || true
}
trap finish EXIT

scripts/cluster up >/dev/null
# shellcheck disable=SC1091
. "$CLUSTER_DIR/secrets.env"
timeout -s KILL 180 k6 run -q \
  -e TARGET="http://127.0.0.1:$NGINX_PORT" \
  -e JWT_SECRET="$SAVED_JWT_SECRET" -e WEBHOOK_API_KEYS="$SAVED_WEBHOOK_API_KEYS" \
  -e USERS="${SMOKE_USERS:-300}" -e RATE="${SMOKE_RATE:-100}" -e DURATION="${SMOKE_DURATION:-5}" \
  -e CONNECT_SECS=3 -e GRACE_SECS=3 -e P95_MS=100 -e P99_MS=250 \
  loadtest/fanout.js
