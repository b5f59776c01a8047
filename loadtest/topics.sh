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
# shellcheck source=loadtest/bench-cluster.sh
. loadtest/bench-cluster.sh
DURATION=${DURATION:-10}
LATENCY_SUBSCRIBERS=${LATENCY_SUBSCRIBERS:-10000}

hard=$(ulimit -Hn)
want=$((LATENCY_SUBSCRIBERS + 1000))
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
  echo "ulimit -n is capped at $hard; $LATENCY_SUBSCRIBERS subscribers need about $want" >&2
  exit 1
fi
ulimit -n "$want"

trap bench_finish EXIT

bench_cluster_up
gateways=$GATEWAYS
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
