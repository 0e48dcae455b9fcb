#!/usr/bin/env bash
# Cross-node fan-out recorded in benches/RESULTS.md: two corecast nodes sharing one Redis on this
# machine; subscribers connect to node B, events are published to node A, so every delivery
# crosses Redis. Reports land in target/bench/<timestamp>-cluster/.
# Needs: cargo build --release --workspace; redis-server (scripts/test-deps.sh installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=target/bench/$(date -u +%Y%m%dT%H%M%SZ)-cluster
LOAD=target/release/corecast-load
REDIS_PORT=6399 A=6211 B=6212
mkdir -p "$OUT"
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true
}
trap cleanup EXIT
for port in $A $B; do
  target/release/corecast --host 127.0.0.1 --port "$port" --redis redis://127.0.0.1:$REDIS_PORT >"$OUT/node-$port.log" 2>&1 &
  pids+=($!)
done
sleep 2
common=(--server "127.0.0.1:$B" --publish-server "127.0.0.1:$A" --label "corecast 2 nodes" --per-worker 5000)
"$LOAD" "${common[@]}" --out "$OUT/fanout1" fanout --subscribers 10000 --channels 1 --find-max --rate 1 --phase-secs 5 --max-p99-ms 500 --publishers 2
"$LOAD" "${common[@]}" --out "$OUT/fanout100" fanout --subscribers 10000 --channels 100 --find-max --rate 200 --phase-secs 5 --max-p99-ms 100 --publishers 4
echo "reports: $OUT"
