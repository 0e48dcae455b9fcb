#!/usr/bin/env bash
# Runs the comparison recorded in benches/RESULTS.md: corecast and soketi on this machine, in one
# session, with the same load, a fresh server process per scenario. Reports land in
# target/bench/<timestamp>/<server>-<scenario>/ (report.json, summary.txt, charts).
#
# Usage: benches/compare.sh [corecast|soketi|both] [scenario ...]
#   scenarios: idle connect fanout1 fanout100 presence churn echo (default: all but echo)
# Needs: cargo build --release --workspace; soketi via scripts/test-deps.sh --with-soketi.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

which=${1:-both}
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(idle connect fanout1 fanout100 presence churn)
OUT=target/bench/$(date -u +%Y%m%dT%H%M%SZ)
LOAD=target/release/corecast-load
PORT=6200
mkdir -p "$OUT"

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "server did not start on $PORT" >&2
  return 1
}

SERVER_PID=
start() {
  local tries=0
  while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    tries=$((tries + 1))
    if [ $tries -gt 100 ]; then
      echo "port $PORT is busy: stop what listens there first" >&2
      exit 1
    fi
    sleep 0.1
  done
  case "$1" in
    corecast)
      # shellcheck disable=SC2086 # $2 holds zero or more flags
      target/release/corecast --host 127.0.0.1 --port "$PORT" ${2:-} >"$OUT/$1-server.log" 2>&1 &
      ;;
    soketi)
      SOKETI_HOST=127.0.0.1 SOKETI_PORT=$PORT SOKETI_METRICS_ENABLED=false SOKETI_METRICS_SERVER_PORT=$((PORT + 1)) \
        SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES=true \
        .testenv/soketi/node_modules/.bin/soketi start >"$OUT/$1-server.log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  wait_port
  sleep 1
}

# Stops the server and waits until the process is gone (soketi takes seconds to exit).
stop() {
  [ -n "$SERVER_PID" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop EXIT

run() {
  local server=$1 scenario=$2 app_id=1
  [ "$server" = soketi ] && app_id=app-id
  local common=(--server "127.0.0.1:$PORT" --label "$server" --app-id "$app_id" --out "$OUT/$server-$scenario")
  local extra=""
  [ "$scenario" = echo ] && extra="--echo"
  start "$server" "$extra"
  echo "== $server $scenario"
  case "$scenario" in
    idle) "$LOAD" "${common[@]}" idle --steps 1000,5000,15000 --channels 1 --settle 5 --rate 2000 ;;
    connect) "$LOAD" "${common[@]}" connect --connections 15000 --rate 20000 --hold 2 ;;
    fanout1) "$LOAD" "${common[@]}" --per-worker 5000 fanout --subscribers 10000 --channels 1 --find-max --rate 1 --phase-secs 5 --max-p99-ms 500 --publishers 2 ;;
    fanout100) "$LOAD" "${common[@]}" --per-worker 5000 fanout --subscribers 10000 --channels 100 --find-max --rate 200 --phase-secs 5 --max-p99-ms 100 --publishers 4 ;;
    presence) "$LOAD" "${common[@]}" presence --connections 2000 --channels 20 --conns-per-user 2 --stay-ms 200 --duration 10 ;;
    churn) "$LOAD" "${common[@]}" churn --steady 2000 --churners 2000 --channels 10 --stay-ms 500 --jitter-ms 250 --rate 100 --duration 10 ;;
    echo) "$LOAD" "${common[@]}" --protocol raw --path /echo echo --connections 100 --duration 10 ;;
  esac
  stop
}

for scenario in "${scenarios[@]}"; do
  [ "$which" = soketi ] || run corecast "$scenario"
  [ "$which" = corecast ] || [ "$scenario" = echo ] || run soketi "$scenario"
done
echo "reports: $OUT"
