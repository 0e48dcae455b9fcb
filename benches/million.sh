#!/usr/bin/env bash
# benches/million.sh: a million (or --connections N) subscribed WebSocket connections on this one
# box, measured. corecast is deployed as it would be on a box whose per-process file limit is too
# low for one process to hold them: K nodes (processes) listening on one port (--share-port: one
# SO_REUSEPORT group), sharing one Redis, behaving as one server. Everything runs inside a network
# namespace of its own, so the net.* settings and the loopback addresses stay there.
#
# Steps: create the namespace; apply tuning/ there (apply.sh --only-net) and the global keys this
# size needs (apply.sh --only-global on a generated subset of sysctl.d/99-corecast.conf, reverted
# afterwards); start Redis and K nodes on 127.0.0.1:6001; run `corecast-load broadcast` (workers
# spread over many loopback source addresses): ramp to N connections, each subscribed (most on a
# few large public channels, --presence-percent on presence channels), hold them --hold seconds
# answering the nodes' heartbeats, broadcast --rounds events that reach every connection; report.
# Bounded by --deadline (whole run, teardown included); stops by itself; on exit, Ctrl-C or
# error it stops every process it started, deletes the namespace and restores the global keys.
#
# Usage: benches/million.sh [options]          (as root; cargo build --release --workspace first)
#   --connections N        connections to hold (default 1000000)
#   --nodes K              corecast processes (default: N / 16,000 rounded up: SO_REUSEPORT
#                          spreads connections by hash, so each stays well under its fd limit)
#   --rate R               connection attempts per second (default 8000)
#   --max-pending P        attempts in flight at once (default 3000)
#   --hold S               seconds to hold every connection before the broadcasts (default 60)
#   --rounds R             broadcasts to all (default 3)
#   --public-channels C    large public channels (default 4)
#   --presence-percent P   connections on presence channels of 100 users (default 2)
#   --activity-timeout S   the nodes' heartbeat interval (default 30: two pings in a 60 s hold)
#   --per-worker W         harness sockets per worker process (default 19000)
#   --deadline S           the whole run's bound in seconds (default 840)
#   --charts NAME          also copy the charts, summary.txt and million.txt to benches/results/NAME/
#   --out DIR              reports (default target/bench/<time>-million)
#   --corecast BIN, --load BIN   binaries (default target/release/corecast, corecast-load)
# Exit status: 0 the run passed (every connection held, every broadcast delivered to all, no
# loss); 1 it did not, or a step failed (the reason is printed); 2 usage; 77 not root.
set -euo pipefail
command_line="benches/million.sh $*"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

connections=1000000 nodes=0 rate=8000 max_pending=3000 hold=60 rounds=3 public=4 presence=2
activity=30 per_worker=19000 deadline=840 charts="" out=""
corecast=$ROOT/target/release/corecast
load=$ROOT/target/release/corecast-load
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
need_num() { [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "million.sh: $1 needs a number (got '${2:-}')" >&2; exit 2; }; }
while (($#)); do
  case $1 in
    --connections) need_num "$1" "${2:-}"; connections=$2; shift 2 ;;
    --nodes) need_num "$1" "${2:-}"; nodes=$2; shift 2 ;;
    --rate) need_num "$1" "${2:-}"; rate=$2; shift 2 ;;
    --max-pending) need_num "$1" "${2:-}"; max_pending=$2; shift 2 ;;
    --hold) need_num "$1" "${2:-}"; hold=$2; shift 2 ;;
    --rounds) need_num "$1" "${2:-}"; rounds=$2; shift 2 ;;
    --public-channels) need_num "$1" "${2:-}"; public=$2; shift 2 ;;
    --presence-percent) need_num "$1" "${2:-}"; presence=$2; shift 2 ;;
    --activity-timeout) need_num "$1" "${2:-}"; activity=$2; shift 2 ;;
    --per-worker) need_num "$1" "${2:-}"; per_worker=$2; shift 2 ;;
    --deadline) need_num "$1" "${2:-}"; deadline=$2; shift 2 ;;
    --charts) charts=${2:?--charts needs a name}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --corecast) corecast=${2:?--corecast needs a path}; shift 2 ;;
    --load) load=${2:?--load needs a path}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; echo "million.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
say() { printf '[million %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'million.sh: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ preconditions
if ((EUID != 0)); then
  echo "million.sh: run it as root: it creates a network namespace and sets sysctls" >&2
  exit 77
fi
for tool in ip nsenter taskset flock redis-server redis-cli nstat; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool is missing (scripts/test-deps.sh installs redis-server; ip, nsenter, taskset and nstat come with iproute2/util-linux)"
done
[[ -x $corecast ]] || die "$corecast is missing: cargo build --release --workspace"
[[ -x $load ]] || die "$load is missing: cargo build --release --workspace"
((connections > 0)) || die "--connections must be at least 1"
nofile=$(ulimit -Hn)
per_node_cap=$((nofile - 64))
((nodes > 0)) || nodes=$(((connections + 15999) / 16000))
((nodes <= 400)) || die "$nodes nodes: at most 400"
# SO_REUSEPORT picks a node by a hash of the connection's addresses: each gets N/K ± a few
# standard deviations. Refuse a layout where the fullest node would pass its file limit.
fullest=$((connections / nodes + 5 * $(awk -v n="$((connections / nodes))" 'BEGIN { printf "%d", sqrt(n) + 1 }')))
((fullest <= per_node_cap)) ||
  die "$nodes nodes for $connections connections: the fullest would get about $fullest, over $per_node_cap (RLIMIT_NOFILE $nofile - 64); use more --nodes"
ncpu=$(nproc)
source_ips=$(((connections + 15999) / 16000))
((source_ips >= 4)) || source_ips=4
((source_ips <= 250)) || die "too many connections for 250 source addresses"
# Memory: per connection ~1 KB server + 2 kernel sockets (~5 KB each, loopback has both ends) +
# ~1.5 KB harness; per node ~3 MB; 1 GiB kept back. A broadcast adds up to a page per socket.
need=$((connections * (1000 + 2 * 5200 + 1500 + 4096) + nodes * 3 * 1048576 + 1073741824))
avail=$(($(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) * 1024))
((need <= avail)) || die "$connections connections need about $((need / 1048576)) MiB; MemAvailable is $((avail / 1048576)) MiB"

# One run at a time: two runs would each save and restore the global sysctls the other changed.
exec 9>/run/lock/corecast-million.lock
flock -n 9 || die "another benches/million.sh run holds /run/lock/corecast-million.lock (wait for it to finish)"

out=${out:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)-million}
mkdir -p "$out"
out=$(cd "$out" && pwd)
ns=corecast-million-$$
state_dir=$out/tuning
mkdir -p "$state_dir"

# ------------------------------------------------------------------ cleanup (always)
node_pids=()
redis_pid=""
harness_pid=""
watchdog_pid=""
global_applied=0
cleaned=0
stop_pids() { # SIGNAL PID...: signal each that is alive
  local sig=$1 p
  shift
  for p in "$@"; do
    if [[ -n $p ]]; then kill "-$sig" "$p" 2>/dev/null || true; fi
  done
}
wait_gone() { # SECONDS PID...: wait until none is alive, at most SECONDS
  local until=$((SECONDS + $1)) p alive
  shift
  while ((SECONDS < until)); do
    alive=0
    for p in "$@"; do [[ -n $p ]] && kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.2
  done
  return 1
}
cleanup() {
  ((cleaned)) && return 0
  cleaned=1
  trap - INT TERM
  set +e
  say "cleaning up"
  stop_pids TERM "$harness_pid"
  wait_gone 20 "$harness_pid" || stop_pids KILL "$harness_pid"
  stop_pids TERM "${node_pids[@]}"
  if ! wait_gone 20 "${node_pids[@]}"; then
    # A node that drains in --drain-timeout (5 s) should be gone: keep its threads' states.
    local p stuck=0
    for p in "${node_pids[@]}"; do
      if [[ -z $p ]] || ! kill -0 "$p" 2>/dev/null; then continue; fi
      stuck=$((stuck + 1))
      for t in /proc/"$p"/task/*; do
        echo "$t $(cat "$t/comm" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"
        cat "$t/stack" 2>/dev/null
      done >"$out/node-stuck-$p.txt"
    done
    say "warning: $stuck node(s) still running 20 s after SIGTERM: killed (thread states in $out/node-stuck-*.txt)"
    stop_pids KILL "${node_pids[@]}"
  fi
  stop_pids TERM "$redis_pid"
  wait_gone 10 "$redis_pid" || stop_pids KILL "$redis_pid"
  if [[ -e /run/netns/$ns ]]; then
    # Anything else still in our namespace was started by this run (harness workers).
    mapfile -t left < <(ip netns pids "$ns" 2>/dev/null)
    if ((${#left[@]})); then
      stop_pids KILL "${left[@]}"
      wait_gone 10 "${left[@]}"
    fi
    ip netns del "$ns" || say "warning: could not delete network namespace $ns"
  fi
  if ((global_applied)); then
    "$ROOT/tuning/apply.sh" --revert --state "$state_dir/global.state" >"$state_dir/global-revert.log" 2>&1 ||
      say "warning: restoring the global sysctls failed: see $state_dir/global-revert.log"
    say "global sysctls restored ($(grep -c '^  restore' "$state_dir/global-revert.log" || true) value(s))"
  fi
  stop_pids TERM "$watchdog_pid"
  say "done; reports in $out"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 1' INT TERM
# The whole run is bounded: the watchdog interrupts this script at the deadline.
(
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$deadline" &
  nap=$!
  wait "$nap"
  echo "million.sh: the run passed its deadline of $deadline s: stopping" >&2
  kill -TERM $$
) &
watchdog_pid=$!

started=$SECONDS
netns_file=/run/netns/$ns
# Foreground commands in the namespace. Background ones call nsenter directly, so that $! is the
# process itself (nsenter, taskset and env exec what they start) and not a subshell.
in_ns() { nsenter --net="$netns_file" -- "$@"; }

# ------------------------------------------------------------------ namespace and tuning
ip netns add "$ns"
ip -n "$ns" link set lo up
say "network namespace $ns; $nodes nodes, $connections connections, $source_ips source addresses"
in_ns "$ROOT/tuning/apply.sh" --only-net --state "$state_dir/net.state" >"$state_dir/net-apply.log" 2>&1 ||
  die "tuning/apply.sh --only-net failed: $(tail -n 3 "$state_dir/net-apply.log")"

# The global keys this size needs, each with the tuning file's value and rule:
# fs.file-max    both ends of every connection (2N files) + workers and nodes, with 25 % to spare;
# net.ipv4.tcp_mem  a broadcast holds up to a page per receiving socket until it is read: the
#                pressure threshold (2nd field, pages) must exceed N;
# net.core.netdev_max_backlog  loopback hands every packet through the per-CPU backlog: a node
#                writing a broadcast to thousands of sockets fills the stock 1,000.
global_keys=()
read -r files_allocated _ _ </proc/sys/fs/file-nr
file_max=$(</proc/sys/fs/file-max)
files_needed=$(((2 * connections + nodes * 100 + 10000) * 5 / 4))
((file_max - files_allocated >= files_needed)) || global_keys+=(fs.file-max)
read -r _ tcp_pressure _ </proc/sys/net/ipv4/tcp_mem
((tcp_pressure > connections)) || global_keys+=(net.ipv4.tcp_mem)
backlog=$(</proc/sys/net/core/netdev_max_backlog)
((backlog >= 16384 || connections <= 2000)) || global_keys+=(net.core.netdev_max_backlog)
if ((${#global_keys[@]})); then
  conf=$state_dir/global.conf
  : >"$conf"
  for k in "${global_keys[@]}"; do
    grep -E "^# ${k//./\\.} \[" tuning/sysctl.d/99-corecast.conf >>"$conf"
    grep -E "^-?${k//./\\.}[[:space:]]*=" tuning/sysctl.d/99-corecast.conf >>"$conf"
  done
  global_applied=1
  "$ROOT/tuning/apply.sh" --only-global --conf "$conf" --state "$state_dir/global.state" \
    >"$state_dir/global-apply.log" 2>&1 || die "tuning/apply.sh --only-global failed: $(tail -n 3 "$state_dir/global-apply.log")"
  say "global sysctls for this size: ${global_keys[*]} (restored at exit)"
fi

# ------------------------------------------------------------------ Redis and the nodes
# Redis is the bus every node shares: with dozens of busy nodes on a few cores it would get
# one runnable share in a hundred and answer late; a real deployment gives it a core.
nsenter --net="$netns_file" -- nice -n -10 redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --maxclients 10000 \
  --logfile "$out/redis.log" 9>&- &
redis_pid=$!
until in_ns redis-cli -p 6379 ping >/dev/null 2>&1; do
  kill -0 "$redis_pid" 2>/dev/null || die "redis-server did not start: $(tail -n 3 "$out/redis.log")"
  ((SECONDS - started < 30)) || die "redis-server did not answer within 30 s"
  sleep 0.1
done

mem_available() { echo $(($(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) * 1024)); }
mem_before_nodes=$(mem_available)
start_node() { # INDEX: starts node INDEX pinned to one CPU
  local i=$1
  nsenter --net="$netns_file" -- taskset -c $((i % ncpu)) env RUST_LOG=info "$corecast" --host 127.0.0.1 --port 6001 --share-port \
    --cores 1 --redis redis://127.0.0.1:6379 --max-connections "$per_node_cap" \
    --activity-timeout "$activity" --drain-timeout 5 >"$out/node-$i.log" 2>&1 9>&- &
  node_pids[i]=$!
}
for ((i = 0; i < nodes; i++)); do start_node "$i"; done
# Wait until every node listens; a node that fails to start (the kernel may refuse io_uring ring
# memory for a moment, ENOMEM) is started again, at most 3 times.
restarts=0
for ((i = 0; i < nodes; i++)); do
  tries=0
  until grep -q "listening on" "$out/node-$i.log" 2>/dev/null; do
    if ! kill -0 "${node_pids[i]}" 2>/dev/null; then
      tries=$((tries + 1))
      ((tries <= 3)) || die "node $i did not start: $(grep -E 'ERROR|error' "$out/node-$i.log" | tail -n 1)"
      say "node $i exited at start-up ($(grep -E 'ERROR' "$out/node-$i.log" | tail -n 1 | sed 's/.*ERROR *//')); starting it again"
      cp "$out/node-$i.log" "$out/node-$i.failed-start-$tries.log"
      restarts=$((restarts + 1))
      sleep 0.5
      start_node "$i"
    fi
    ((SECONDS - started < 120)) || die "node $i did not start listening within 120 s"
    sleep 0.1
  done
done
# And every node has joined the cluster (its bridge connected to Redis).
until (($(grep -l "joins the cluster" "$out"/node-*.log 2>/dev/null | grep -vc failed-start) >= nodes)); do
  ((SECONDS - started < 150)) || die "not every node connected to Redis within 150 s"
  sleep 0.2
done
sleep 1 # a second for the nodes' start-up allocations to land in the idle-memory figure
mem_after_nodes=$(mem_available)
say "$nodes nodes listening on 127.0.0.1:6001 ($restarts restarted at start-up) after $((SECONDS - started)) s; pids ${node_pids[*]}"

# ------------------------------------------------------------------ the load
pids_csv=$(IFS=,; echo "${node_pids[*]}")
nstat_before=$(in_ns nstat -asz 2>/dev/null || true)
softnet_drops() { # packets dropped because a CPU's backlog (netdev_max_backlog) was full
  local total=0 _cpu dropped _rest
  while read -r _cpu dropped _rest; do total=$((total + 16#$dropped)); done </proc/net/softnet_stat
  echo "$total"
}
drops0=$(softnet_drops)
redis_ticks() { awk '{ print $14 + $15 }' "/proc/$redis_pid/stat"; }
redis0=$(redis_ticks)
harness_args=(--server 127.0.0.1:6001 --server-pid "$pids_csv" --source-ips "127.1.0.1-127.1.0.$source_ips"
  --per-worker "$per_worker" --label "corecast, $nodes nodes" --out "$out/run")
[[ -z $charts ]] || harness_args+=(--charts-to "$ROOT/benches/results/$charts")
say "ramping to $connections connections at up to $rate/s, then holding $hold s and broadcasting $rounds times"
t_load=$SECONDS
nsenter --net="$netns_file" -- "$load" "${harness_args[@]}" broadcast --connections "$connections" --rate "$rate" \
  --max-pending "$max_pending" --hold "$hold" --rounds "$rounds" --public-channels "$public" \
  --presence-percent "$presence" >"$out/harness.log" 2>&1 9>&- &
harness_pid=$!
wait "$harness_pid" || die "corecast-load failed: $(tail -n 5 "$out/harness.log")"
harness_pid=""
load_seconds=$((SECONDS - t_load))
redis1=$(redis_ticks)
drops1=$(softnet_drops)
nstat_after=$(in_ns nstat -asz 2>/dev/null || true)
report=$out/run/report.json
[[ -s $report ]] || die "no report from corecast-load: $(tail -n 5 "$out/harness.log")"

# ------------------------------------------------------------------ what else the run showed
counter() { awk -v k="$1" '$1 == k { print $2; exit }' <<<"$2"; }
delta() { echo $(($(counter "$1" "$nstat_after") - $(counter "$1" "$nstat_before"))); }
redis_rss=$(($(awk '/^VmRSS:/ {print $2}' "/proc/$redis_pid/status") * 1024))
node_warnings=$(cat "$out"/node-*.log | grep -E ' (WARN|ERROR) ' |
  grep -vcE 'max_connections=.* needs about|backlog .* exceeds' || true)
alive=0
for p in "${node_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
passed=$(sed -nE 's/^    "passed": (true|false),?$/\1/p' "$report")
figure() { sed -nE "s/^    \"$1\": ([0-9]+)(\.[0-9]+)?,?\$/\1/p" "$report"; }
kernel_per_socket=$(figure kernel_slab_per_socket)
server_per_connection=$(figure server_rss_per_connection)
{
  echo "benches/million.sh: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command: $command_line"
  echo "machine: $ncpu CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r), RLIMIT_NOFILE $nofile"
  echo "layout: $nodes corecast nodes (--cores 1 each, pinned round-robin over $ncpu CPUs, --share-port on 127.0.0.1:6001, --max-connections $per_node_cap, --activity-timeout $activity), one Redis, harness workers of <= $per_worker sockets over $source_ips source addresses, in network namespace $ns"
  echo "global sysctls applied: ${global_keys[*]:-none}"
  echo "nodes: $restarts restarted at start-up; $alive of $nodes alive after the run; $node_warnings warnings/errors in their logs"
  echo "idle nodes: MemAvailable fell $(((mem_before_nodes - mem_after_nodes) / nodes)) bytes per node when the $nodes nodes started"
  echo "redis: $(((redis1 - redis0) / 100)).$(printf '%02d' $(((redis1 - redis0) % 100))) CPU seconds over the $load_seconds s of load, RSS $((redis_rss / 1048576)) MiB"
  echo "kernel: softnet backlog drops $((drops1 - drops0)); TCP listen overflows $(delta TcpExtListenOverflows), listen drops $(delta TcpExtListenDrops), memory pressure events $(delta TcpExtTCPMemoryPressures), aborts on memory $(delta TcpExtTCPAbortOnMemory), retransmitted segments $(delta TcpRetransSegs) (SYN $(delta TcpExtTCPSynRetrans), loss probes $(delta TcpExtTCPLossProbes), timeouts $(delta TcpExtTCPTimeouts)), SYN cookies sent $(delta TcpExtSyncookiesSent)"
  echo "time: $load_seconds s of load; $((SECONDS - started)) s from start to report"
  echo "passed: $passed"
  # What tuning/check.sh and the server's start-up estimate read (benches/RESULTS.md, src/capacity.rs).
  echo "capacity-figures: kernel_bytes_per_socket=${kernel_per_socket:-?} corecast_bytes_per_socket=${server_per_connection:-?}"
  echo
  cat "$out/run/summary.txt"
} >"$out/million.txt"
cat "$out/million.txt"
[[ -z $charts ]] || cp "$out/million.txt" "$ROOT/benches/results/$charts/million.txt"
[[ $passed == true ]] || die "the run did not pass: see \"reasons\" above"
