#!/usr/bin/env bash
# Runs a command and prints the CPU seconds each process of the local
# cluster (and MySQL, Redis, nginx) used meanwhile.
#   loadtest/cpu.sh COMMAND...
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${CLUSTER_DIR:-.cluster}
pids=""
for f in "$STATE"/pids/*.pid; do pids="$pids $(cat "$f")"; done
pids="$pids $(pgrep -x mariadbd || true) $(pgrep -x redis-server || true) $(pgrep -f 'nginx: worker' || true)"
snap() { for p in $pids; do [ -r "/proc/$p/stat" ] && echo "$p $(awk '{print $14+$15}' "/proc/$p/stat") $(tr '\0' ' ' < "/proc/$p/cmdline" | awk '{print $1}' | xargs basename)"; done | sort; }
before=$(snap)
start=$(date +%s.%N)
status=0
"$@" || status=$?
end=$(date +%s.%N)
after=$(snap)
echo "cpu seconds per process over $(echo "$end - $start" | bc) s:"
join <(echo "$before") <(echo "$after") | awk '{ name=$3; if (name ~ /^nginx/) name="nginx-worker"; cpu[name] += ($4 - $2) / 100 } END { for (n in cpu) printf "  %-16s %6.1f\n", n, cpu[n] }' | sort -k2 -rn
exit $status
