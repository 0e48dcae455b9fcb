#!/usr/bin/env bash
# Runs the comparisons recorded in benches/RESULTS.md on this machine, in one sitting, with the
# same load for every server and a fresh server process per scenario: corecast, soketi (Pusher
# protocol, events published over the HTTP API) and uWebSockets.js (benches/uws/broadcast.js, a
# plain WebSocket broadcast server, events published over a WebSocket; fan-out, idle and
# connect only). Reports land in target/bench/<timestamp>/<server>-<scenario>/ (report.json,
# summary.txt, SVG charts); target/bench/<timestamp>/results.md has the tables.
#
# Usage: benches/compare.sh [--smoke] [--charts NAME] [corecast|soketi|uws|both|corecast-uws|all|deflate] [scenario ...]
#   both: corecast and soketi; corecast-uws: corecast and uWebSockets.js; all: the three
#   (default: all); deflate: corecast, then corecast
#   with --permessage-deflate and every harness client negotiating it (label corecast+deflate)
#   scenarios: idle connect fanout1 fanout100 presence churn echo (default: all but echo),
#              fanout1at (one channel at AT=<events/s> for 15 s: latency at a given load)
#   --charts NAME  also copy every run's charts and summary.txt, and results.md, into
#                  benches/results/NAME/ (small SVGs, to commit and show in RESULTS.md)
#   --smoke        the same runs at a tiny size (hundreds of connections, 1 s phases), to check
#                  the script and the servers before a real sitting; not for figures
# Examples (issue 12's proof): benches/compare.sh --charts fanout all fanout1 fanout100
# Needs: cargo build --release --workspace; scripts/test-deps.sh --with-soketi --with-uws.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

charts=""
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --charts)
      charts=${2:?--charts needs a name}
      shift 2
      ;;
    --smoke)
      smoke=1
      shift
      ;;
    *) break ;;
  esac
done
# Sizes: connections held, fan-out subscribers, find-max phase seconds and most phases.
if ((smoke)); then
  steps=100,300 conns=300 subs=300 phase=1 phases=3 pair=100 settle=1
else
  steps=1000,5000,15000 conns=15000 subs=10000 phase=5 phases=16 pair=2000 settle=5
fi
# Fan-out subscribers are held by two worker processes, i.e. two receive threads. With one,
# next to a server on both cores, that thread got half a CPU and read what the kernel had
# received 25 ms late at p50 and over 100 ms late at p99 (2026-11-30): latency then measured
# the harness. Each run reports this lag (harness read lag).
recv_subs=$(((subs + 1) / 2))
which=${1:-all}
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(idle connect fanout1 fanout100 presence churn)
case "$which" in
  corecast) servers=(corecast) ;;
  soketi) servers=(soketi) ;;
  uws) servers=(uws) ;;
  both) servers=(corecast soketi) ;;
  corecast-uws) servers=(corecast uws) ;;
  all) servers=(corecast soketi uws) ;;
  deflate) servers=(corecast corecast-deflate) ;;
  *)
    echo "compare.sh: unknown server set $which (corecast, soketi, uws, both, corecast-uws, all, deflate)" >&2
    exit 2
    ;;
esac
OUT=target/bench/$(date -u +%Y%m%dT%H%M%SZ)
LOAD=target/release/corecast-load
PORT=6200
mkdir -p "$OUT"
[ -x "$LOAD" ] || {
  echo "compare.sh: run cargo build --release --workspace first" >&2
  exit 1
}
for s in "${servers[@]}"; do
  case $s in
    corecast | corecast-deflate) [ -x target/release/corecast ] || {
      echo "compare.sh: run cargo build --release --workspace first" >&2
      exit 1
    } ;;
    soketi) [ -x .testenv/soketi/node_modules/.bin/soketi ] || {
      echo "compare.sh: soketi is missing: run scripts/test-deps.sh --with-soketi" >&2
      exit 1
    } ;;
    uws) [ -e .testenv/uws/node_modules/@trufflesuite/uws-js-unofficial/package.json ] || {
      echo "compare.sh: uWebSockets.js is missing: run scripts/test-deps.sh --with-uws" >&2
      exit 1
    } ;;
  esac
done

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
    corecast-deflate)
      # shellcheck disable=SC2086 # $2 holds zero or more flags
      target/release/corecast --host 127.0.0.1 --port "$PORT" --permessage-deflate ${2:-} \
        >"$OUT/$1-server.log" 2>&1 &
      ;;
    soketi)
      SOKETI_HOST=127.0.0.1 SOKETI_PORT=$PORT SOKETI_METRICS_ENABLED=false SOKETI_METRICS_SERVER_PORT=$((PORT + 1)) \
        SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES=true \
        .testenv/soketi/node_modules/.bin/soketi start >"$OUT/$1-server.log" 2>&1 &
      ;;
    uws)
      NODE_PATH=.testenv/uws/node_modules node benches/uws/broadcast.js --host 127.0.0.1 --port "$PORT" \
        >"$OUT/$1-server.log" 2>&1 &
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

ran=()
run() {
  local server=$1 scenario=$2 app_id=1 label=$1
  case "$server" in
    soketi) app_id=app-id ;;
    uws) label=uWS.js ;;
    corecast-deflate) label=corecast+deflate ;;
  esac
  if [ "$server" = uws ]; then
    case "$scenario" in presence | churn | echo) return 0 ;; esac
  fi
  local dir="$OUT/$server-$scenario"
  local common=(--server "127.0.0.1:$PORT" --label "$label" --app-id "$app_id" --out "$dir")
  [ "$server" != uws ] || common+=(--protocol plain)
  [ "$server" != corecast-deflate ] || common+=(--deflate)
  [ -z "$charts" ] || common+=(--charts-to "benches/results/$charts/$server-$scenario")
  local extra=""
  [ "$scenario" = echo ] && extra="--echo"
  # find-max starts at a rate every server keeps up with (soketi falls behind 200,000
  # deliveries/s, so its search starts lower) and raises it by 1.5x per phase.
  # soketi accepts fewer than 6,000 connects/s and times out the excess, so its subscribers
  # connect at 1,000/s (the others at the harness default, 5,000/s).
  local rate1=20 rate100=2000 subscribe=()
  [ "$server" != soketi ] || { rate1=3; rate100=300; subscribe=(--connect-rate 1000); }
  start "$server" "$extra"
  echo "== $server $scenario"
  case "$scenario" in
    idle) "$LOAD" "${common[@]}" idle --steps "$steps" --channels 1 --settle "$settle" --rate 2000 ;;
    connect) "$LOAD" "${common[@]}" connect --connections "$conns" --rate 20000 --hold 2 ;;
    fanout1) "$LOAD" "${common[@]}" --per-worker "$recv_subs" fanout --subscribers "$subs" --channels 1 --find-max --rate "$rate1" --phase-secs "$phase" --max-phases "$phases" --max-p99-ms 500 --publishers 2 "${subscribe[@]}" ;;
    # One channel at a fixed rate (AT events/s), for latency side by side at the same load.
    fanout1at) "$LOAD" "${common[@]}" --per-worker "$recv_subs" fanout --subscribers "$subs" --channels 1 --rate "${AT:?fanout1at needs AT=<events/s>}" --duration "$((phase * 3))" --publishers 2 "${subscribe[@]}" ;;
    fanout100) "$LOAD" "${common[@]}" --per-worker "$recv_subs" fanout --subscribers "$subs" --channels 100 --find-max --rate "$rate100" --phase-secs "$phase" --max-phases "$phases" --max-p99-ms 100 --publishers 4 "${subscribe[@]}" ;;
    presence) "$LOAD" "${common[@]}" presence --connections "$pair" --channels 20 --conns-per-user 2 --stay-ms 200 --duration "$((phase * 2))" ;;
    churn) "$LOAD" "${common[@]}" churn --steady "$pair" --churners "$pair" --channels 10 --stay-ms 500 --jitter-ms 250 --rate 100 --duration "$((phase * 2))" ;;
    echo) "$LOAD" "${common[@]}" --protocol raw --path /echo echo --connections 100 --duration "$((phase * 2))" ;;
    *)
      echo "compare.sh: unknown scenario $scenario" >&2
      exit 2
      ;;
  esac
  stop
  ran+=("$dir")
}

for scenario in "${scenarios[@]}"; do
  for server in "${servers[@]}"; do
    [ "$server" = soketi ] && [ "$scenario" = echo ] && continue
    run "$server" "$scenario"
  done
done

{
  echo "# Comparison $(basename "$OUT")"
  echo
  echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r); \
$(date -u '+%Y-%m-%d %H:%M UTC'); \`benches/compare.sh $([ $smoke = 1 ] && printf -- '--smoke ')${charts:+--charts $charts }$which ${scenarios[*]}\`"
  echo
  "$LOAD" table "${ran[@]}"
  if [ -n "$charts" ]; then
    echo "Charts (links relative to benches/, as RESULTS.md shows them):"
    echo
    for dir in "${ran[@]}"; do
      run_name=$(basename "$dir")
      printf '%s: ' "$run_name"
      for c in throughput latency cpu connections server_rss kernel_memory; do
        printf '[%s](results/%s/%s/%s.svg) ' "$c" "$charts" "$run_name" "$c"
      done
      printf '\n![%s throughput](results/%s/%s/throughput.svg)\n\n' "$run_name" "$charts" "$run_name"
    done
  fi
} >"$OUT/results.md"
cat "$OUT/results.md"
if [ -n "$charts" ]; then
  cp "$OUT/results.md" "benches/results/$charts/results.md"
  echo "charts and tables: benches/results/$charts/"
fi
echo "reports: $OUT"
