#!/usr/bin/env bash
# What storing a notification costs MySQL at everyday load: for each rate,
# a fan-out run (each POST one notification to one user, so each is a batch
# of its own) and MySQL's global counters (SHOW GLOBAL STATUS) before and
# after it, divided by the notifications sent, with the CPU seconds of the
# api and MySQL over the run.
#
#   loadtest/writepath.sh [RATE...]     (default: 200 700)
#
# USERS (500), DURATION (10). The counters are global: anything else using
# the same MariaDB meanwhile counts too.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${*:-"200 700"}
USERS=${USERS:-500}
DURATION=${DURATION:-10}
# shellcheck source=loadtest/bench-cluster.sh
. loadtest/bench-cluster.sh
before=$(mktemp) after=$(mktemp)
finish() {
  bench_finish
  rm -f "$before" "$after"
}
trap finish EXIT
bench_cluster_up

COUNTERS="'Com_begin','Com_commit','Com_select','Com_insert','Com_update','Com_delete','Com_stmt_execute','Com_stmt_prepare','Com_stmt_close','Questions','Innodb_data_fsyncs'"
snap() { mysql -h127.0.0.1 -uroot -N -e "SHOW GLOBAL STATUS WHERE Variable_name IN ($COUNTERS)" | sort; }
run() {
  JWT_SECRET=$SAVED_JWT_SECRET API_KEY=${SAVED_WEBHOOK_API_KEYS%%,*} \
    TARGET=http://127.0.0.1:$NGINX_PORT USERS=$USERS env "$@"
}
# Warm-up, not reported.
run RATE=700 DURATION=3 target/release/fanout >/dev/null 2>&1 || true
for rate in $RATES; do
  echo
  snap > "$before"
  run RATE="$rate" DURATION="$DURATION" loadtest/cpu.sh target/release/fanout
  snap > "$after"
  echo "MySQL per notification at $rate/s:"
  join "$before" "$after" | awk -v n=$((rate * DURATION)) '{ printf "  %-20s %6.2f\n", $1, ($3 - $2) / n }'
done
