#!/usr/bin/env bash
# The Socket.IO path against the native one, on the same local cluster
# (nginx, one api, three gateways) and the same fan-out load: for each rate
# a native run, then a Socket.IO run (`fanout` with PROTOCOL=socketio), each
# with the CPU seconds every process used. Then idle memory per connection
# for both (loadtest/memory.sh).
#
#   loadtest/socketio.sh [RATE...]     (default: 1000 5000)
#
# USERS (2000) and DURATION (20) as in loadtest/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${*:-"1000 5000"}
# shellcheck source=loadtest/bench-cluster.sh
. loadtest/bench-cluster.sh
USERS=${USERS:-2000}
DURATION=${DURATION:-20}

trap bench_finish EXIT

bench_cluster_up
run() {
  JWT_SECRET=$SAVED_JWT_SECRET API_KEY=${SAVED_WEBHOOK_API_KEYS%%,*} \
    TARGET=http://127.0.0.1:$NGINX_PORT USERS=$USERS env "$@"
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -r)"
# Warm-up, not reported.
run RATE=1000 DURATION=5 target/release/fanout >/dev/null 2>&1 || true
status=0
for rate in $RATES; do
  for protocol in native socketio; do
    echo
    run PROTOCOL=$protocol RATE=$rate DURATION=$DURATION loadtest/cpu.sh target/release/fanout || status=1
  done
done
bench_finish
trap - EXIT
echo
loadtest/memory.sh "${MEMORY_CONNECTIONS:-10000}"
exit $status
