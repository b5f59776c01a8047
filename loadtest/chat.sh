#!/usr/bin/env bash
# Chat benchmark reported in docs/benchmarks.md, on a local cluster (one
# api, three gateways, MySQL, Redis) with the load generator on the same
# machine, connected straight to the gateways.
#
#   loadtest/chat.sh [RATE...]     (default: 1000)
#
# PAIRS (200) direct conversations, sender and receiver on two different
# gateways; senders write message.send frames at RATE messages/s in total
# for DURATION (10) s. Reports send -> delivery to the other member, send
# -> message.sent, CPU per process, and MySQL's statement and fsync counters
# per message over exactly the sending window.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${*:-1000}
# shellcheck source=loadtest/bench-cluster.sh
. loadtest/bench-cluster.sh
export DURATION=${DURATION:-10} PAIRS=${PAIRS:-200}
COUNTERS="'Com_stmt_execute','Com_select','Com_insert','Com_insert_select','Com_update','Com_delete','Com_begin','Com_commit','Questions','Innodb_data_fsyncs'"

finish() {
  bench_finish
  rm -f "$counters" "$hook"
}
counters=$(mktemp) hook=$(mktemp)
trap finish EXIT

bench_cluster_up
gateways=$GATEWAYS
# HOOK before|after: MySQL's global counters at the start and the end of
# the sending window, appended to $counters as "<when> <name> <value>".
cat > "$hook" <<HOOK
mysql -h127.0.0.1 -uroot -N -e "SHOW GLOBAL STATUS WHERE Variable_name IN ($COUNTERS)" | sed "s/^/\$1 /" >> "$counters"
HOOK
export HOOK="sh $hook"
run() {
  JWT_SECRET=$SAVED_JWT_SECRET API=http://127.0.0.1:$API_PORT GATEWAYS="$gateways" "$@"
}
per_message() {
  awk -v n="$1" '
    $1 == "before" { b[$2] = $3 } $1 == "after" { a[$2] = $3 }
    END { for (k in a) printf "  %-20s %8.2f per message\n", k, (a[k] - b[k]) / n }' "$counters" | sort
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -r)"
status=0
# Warm-up, not reported.
run env RATE=100 DURATION=2 PAIRS=20 HOOK= target/release/chat-latency >/dev/null 2>&1 || true
for rate in $RATES; do
  echo
  : > "$counters"
  RATE=$rate run loadtest/cpu.sh target/release/chat-latency || status=1
  echo "MySQL counters over the sending window:"
  per_message $((rate * DURATION))
done
exit $status
