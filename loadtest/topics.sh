#!/usr/bin/env bash
# Topic fan-out benchmarks reported in docs/benchmarks.md, on a local
# cluster (one api, three gateways, MySQL, Redis) with the load generator on
# the same machine, connected straight to the gateways.
#
#   loadtest/topics.sh [RATE...]     (default: 100 200 400 800)
#
# 1. Latency: 10,000 subscribers of one topic spread over the three
#    gateways, LATENCY_RATE (5) events per second for DURATION (10) s.
# 2. Throughput: 1,000 subscribers of one topic, each RATE in turn.
# The load generator holds one file descriptor per subscriber.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${*:-"100 200 400 800"}
export NGINX_PORT=${BENCH_NGINX_PORT:-28080} API_PORT=${BENCH_API_PORT:-28081}
export GATEWAY_PORTS=${BENCH_GATEWAY_PORTS:-"28082 28083 28084"}
export CLUSTER_DIR=.cluster-bench DATABASE_URL=mysql://root@127.0.0.1:3306/notify_bench
export CHANNEL_PREFIX=bench: RUST_LOG=warn
DURATION=${DURATION:-10}
LATENCY_SUBSCRIBERS=${LATENCY_SUBSCRIBERS:-10000}

hard=$(ulimit -Hn)
want=$((LATENCY_SUBSCRIBERS + 1000))
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
  echo "ulimit -n is capped at $hard; $LATENCY_SUBSCRIBERS subscribers need about $want" >&2
  exit 1
fi
ulimit -n "$want"

finish() {
  scripts/cluster down >/dev/null || true
  mysql -h127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS notify_bench' || true
}
trap finish EXIT

cargo build --release -q -p notify-bench
scripts/cluster up >/dev/null
# shellcheck disable=SC1091
. "$CLUSTER_DIR/secrets.env"
gateways=""
for port in $GATEWAY_PORTS; do gateways="$gateways ws://127.0.0.1:$port"; done
run() {
  JWT_SECRET=$SAVED_JWT_SECRET API_KEY=${SAVED_WEBHOOK_API_KEYS%%,*} \
    API=http://127.0.0.1:$API_PORT GATEWAYS="$gateways" DURATION=$DURATION "$@"
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -r)"
status=0
# Warm-up, not reported.
SUBSCRIBERS=100 RATE=50 run env DURATION=3 target/release/topic-fanout >/dev/null 2>&1 || true
echo
SUBSCRIBERS=$LATENCY_SUBSCRIBERS RATE=${LATENCY_RATE:-5} run loadtest/cpu.sh target/release/topic-fanout || status=1
for rate in $RATES; do
  echo
  SUBSCRIBERS=1000 RATE=$rate run loadtest/cpu.sh target/release/topic-fanout || status=1
done
exit $status
