# Sourced by the benchmark scripts: the cluster they measure (nginx, one
# api, three gateways) on ports, a database and a channel prefix of its
# own (28080-28084, notify_bench), started by bench_cluster_up and stopped
# by bench_finish. BENCH_NGINX_PORT, BENCH_API_PORT and BENCH_GATEWAY_PORTS
# move it.
export NGINX_PORT=${BENCH_NGINX_PORT:-28080} API_PORT=${BENCH_API_PORT:-28081}
export GATEWAY_PORTS=${BENCH_GATEWAY_PORTS:-"28082 28083 28084"}
export CLUSTER_DIR=.cluster-bench DATABASE_URL=mysql://root@127.0.0.1:3306/notify_bench
export CHANNEL_PREFIX=bench: RUST_LOG=warn

bench_finish() {
  scripts/cluster down >/dev/null || true
  mysql -h127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS notify_bench' || true
}

# Builds the load generators, starts the cluster and reads its secrets
# (SAVED_JWT_SECRET, SAVED_WEBHOOK_API_KEYS); GATEWAYS lists the gateways'
# own addresses, for load generators that bypass nginx.
bench_cluster_up() {
  cargo build --release -q -p notify-bench
  scripts/cluster up >/dev/null
  # shellcheck disable=SC1091
  . "$CLUSTER_DIR/secrets.env"
  GATEWAYS=""
  local port
  for port in $GATEWAY_PORTS; do GATEWAYS="$GATEWAYS ws://127.0.0.1:$port"; done
}
