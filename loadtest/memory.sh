#!/usr/bin/env bash
# Idle memory per WebSocket connection: a gateway node (native clients at
# /ws, then Socket.IO clients at /socket.io/, each on a fresh process)
# against a bare actix-ws server (one frame sent, socket held) measured the
# same way in the same run. Usage: loadtest/memory.sh [CONNECTIONS]
# (default 10000)
#
# Needs the local MySQL and Redis (scripts/services starts them). Each server
# and the client run as separate processes; the client needs one file
# descriptor per connection, and so does each server.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-10000}
MYSQL=${MYSQL_URL:-mysql://root@127.0.0.1:3306}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DB=notify_bench_memory
SECRET=bench-secret-0123456789
BARE_PORT=${BARE_PORT:-9099}
GATEWAY_PORT=${GATEWAY_PORT:-9098}

hard=$(ulimit -Hn)
want=$((N + 1000))
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
  echo "ulimit -n is capped at $hard; $N connections need about $want" >&2
  exit 1
fi
ulimit -n "$want"

scripts/services
cargo build --release -q -p notify-gateway -p notify-api -p notify-bench
BIN=target/release

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

wait_http() {
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  exit 1
}

# measure NAME PID WS_URL [PROTOCOL]: prints "NAME before_kb after_kb per_conn_bytes rate"
measure() {
  local name=$1 pid=$2 url=$3 protocol=${4:-native} before after line
  sleep 1
  before=$(rss_kb "$pid")
  coproc HOLD { PROTOCOL=$protocol JWT_SECRET=$SECRET exec "$BIN/ws-hold" "$url" "$N" 200; }
  read -r line <&"${HOLD[0]}"
  sleep 2
  after=$(rss_kb "$pid")
  # Closing the client's stdin lets it exit.
  exec {HOLD[1]}>&-
  wait "$HOLD_PID" 2>/dev/null || true
  set -- $line
  echo "$name $before $after $(( (after - before) * 1024 / $2 )) $4 opened=$2 $5"
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

BARE_ADDR=127.0.0.1:$BARE_PORT "$BIN/bare-ws" &
pids+=($!)
bare_pid=$!
sleep 0.5
bare=$(measure bare-actix-ws "$bare_pid" "ws://127.0.0.1:$BARE_PORT/ws")
kill "$bare_pid"

mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
DATABASE_URL=$MYSQL/$DB "$BIN/notify-api" migrate >/dev/null
# gateway NAME PATH PROTOCOL: a fresh gateway process, measured.
gateway() {
  GATEWAY_ADDR=127.0.0.1:$GATEWAY_PORT DATABASE_URL=$MYSQL/$DB REDIS_URL=$REDIS_URL \
    JWT_SECRET=$SECRET CHANNEL_PREFIX=bench-memory: RUST_LOG=warn \
    CONNECT_RATE=1000000 CONNECT_BURST=1000000 "$BIN/notify-gateway" &
  pids+=($!)
  local pid=$!
  wait_http "http://127.0.0.1:$GATEWAY_PORT/ready"
  measure "$1" "$pid" "ws://127.0.0.1:$GATEWAY_PORT$2" "$3"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
gateway=$(gateway notify-gateway /ws native)
socketio=$(gateway gateway-socketio "/socket.io/?EIO=4&transport=websocket" socketio)
mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB"

echo
echo "connections: $N (one user each)"
printf '%-16s %12s %12s %16s %14s\n' server rss_before_kb rss_after_kb bytes_per_conn connects_per_s
for row in "$bare" "$gateway" "$socketio"; do
  set -- $row
  printf '%-16s %12s %12s %16s %14s\n' "$1" "$2" "$3" "$4" "$5"
done
set -- $bare; b=$4
set -- $gateway; g=$4
echo "gateway overhead over bare actix-ws: $(( (g - b) * 100 / b ))%"
