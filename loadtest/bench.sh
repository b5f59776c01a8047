#!/usr/bin/env bash
# The benchmarks reported in docs/benchmarks.md, on a local cluster (nginx,
# one api, three gateways, MySQL, Redis) with the load generator on the same
# machine.
#
#   loadtest/bench.sh [RATE...]     (default: 200 2500 5000 10000)
#
# For each rate: USERS (2000) connected users, one POST per notification for
# DURATION (20) seconds, end-to-end delivery latency, and the CPU seconds
# every process used (the load generator included). Then idle memory per
# connection (loadtest/memory.sh; BENCH_MEMORY=0 skips it). Uses its own
# ports and database; on a Redis Cluster when REDIS_CLUSTER_NODES is set
# (scripts/redis-cluster with -- loadtest/bench.sh ...).
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${*:-"200 2500 5000 10000"}
# shellcheck source=loadtest/bench-cluster.sh
. loadtest/bench-cluster.sh
USERS=${USERS:-2000}
DURATION=${DURATION:-20}

trap bench_finish EXIT

bench_cluster_up
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -r)"
# Warm-up, not reported: a fresh database, cold caches and first prepared
# statements would otherwise land in the first run's tail latency.
JWT_SECRET=$SAVED_JWT_SECRET API_KEY=${SAVED_WEBHOOK_API_KEYS%%,*} \
  TARGET=http://127.0.0.1:$NGINX_PORT USERS=$USERS RATE=1000 DURATION=5 \
  target/release/fanout >/dev/null 2>&1 || true
status=0
for rate in $RATES; do
  echo
  JWT_SECRET=$SAVED_JWT_SECRET API_KEY=${SAVED_WEBHOOK_API_KEYS%%,*} \
    TARGET=http://127.0.0.1:$NGINX_PORT USERS=$USERS RATE=$rate DURATION=$DURATION \
    loadtest/cpu.sh target/release/fanout || status=1
done
bench_finish
trap - EXIT
if [ "${BENCH_MEMORY:-1}" != 0 ]; then
  echo
  loadtest/memory.sh "${MEMORY_CONNECTIONS:-10000}"
fi
exit $status
