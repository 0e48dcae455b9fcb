#!/usr/bin/env bash
# check.sh: read-only report on whether this box is ready for corecast's
# connection count, and how many connections it can hold. Changes nothing.
# Formula and output format: tuning/README.md ("Capacity estimate").
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

CC_PROG=check.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# Figures used when benches/RESULTS.md has no capacity-figures line.
readonly DEFAULT_KERNEL_BYTES=4300
readonly DEFAULT_CORECAST_BYTES=2048
readonly FD_SLACK=64          # fds corecast needs besides connections
readonly DEFAULT_TARGET=1000000
readonly IO_MEMORY=65536      # bytes each executor (one per core) registers with io_uring
readonly MEMLOCK_ADVISED=67108864

usage() {
	cat <<'EOF'
usage: tuning/check.sh [options]
Read-only: compares kernel settings with tuning/sysctl.d/99-corecast.conf,
shows the process limits and io_uring availability, and estimates how many
connections this box can hold.

  --target N          exit 0 if the box is ready for N connections, 1 if not
  --pid P             read limits of running process P (corecast) instead of
                      this script's own (the would-be server's)
  --kernel-bytes N    kernel memory per idle socket (default: benches/RESULTS.md, else 4300)
  --corecast-bytes N  corecast memory per idle connection (default: benches/RESULTS.md, else 2048)
  --reserve-mb N      memory kept back, in MiB (default: 512 MiB + 5% of MemTotal)
  --results FILE      where to find the capacity-figures line (default: benches/RESULTS.md)
  --conf FILE         sysctl file to compare with (default: tuning/sysctl.d/99-corecast.conf)
  --json              print one JSON object instead of the table
  -h, --help          this text

Exit status: 0 = report printed (and, with --target, ready); 1 = not ready
for --target N; 2 = usage error or unreadable /proc.
The last line is always the summary:
  capacity: N connections (limited by FACTOR); memory|file descriptors would allow M
EOF
}

target=
pid=
kernel_bytes=
corecast_bytes=
reserve_mb=
results=$(cd "$HERE/.." && pwd)/benches/RESULTS.md
conf=$HERE/sysctl.d/99-corecast.conf
json=0

need_uint() {
	cc_is_uint "${2:-}" || cc_die "$1 needs a non-negative integer (got '${2:-}')"
}

while (($#)); do
	case $1 in
	--target) need_uint "$1" "${2:-}"; target=$2; shift 2 ;;
	--pid) need_uint "$1" "${2:-}"; pid=$2; shift 2 ;;
	--kernel-bytes) need_uint "$1" "${2:-}"; kernel_bytes=$2; shift 2 ;;
	--corecast-bytes) need_uint "$1" "${2:-}"; corecast_bytes=$2; shift 2 ;;
	--reserve-mb) need_uint "$1" "${2:-}"; reserve_mb=$2; shift 2 ;;
	--results) [[ -n ${2:-} ]] || cc_die "--results needs a file"; results=$2; shift 2 ;;
	--conf) [[ -n ${2:-} ]] || cc_die "--conf needs a file"; conf=$2; shift 2 ;;
	--json) json=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; cc_die "unknown option: $1" ;;
	esac
done

cc_load_conf "$conf"

# ---------------------------------------------------------------- sysctls
ROWS=()   # "item|current|recommended|status" for the table and JSON
WARN=()   # notes printed under the table

add_row() { ROWS+=("$1|$2|$3|$4"); }

conntrack_loaded=0
[[ -e /proc/sys/net/netfilter/nf_conntrack_max ]] && conntrack_loaded=1
sysctl_not_ok=0
for i in "${!CC_KEYS[@]}"; do
	key=${CC_KEYS[i]}
	want=${CC_WANT[i]}
	rule=${CC_RULE[i]}
	rec=$(cc_rule_text "$rule" "$want")
	if ! cc_read "$key"; then
		if [[ $key == net.netfilter.nf_conntrack_* && $conntrack_loaded == 0 ]]; then
			add_row "$key" "(conntrack not loaded)" "$rec" "N/A"
		else
			add_row "$key" "(absent here)" "$rec" "N/A"
		fi
		continue
	fi
	cc_eval "$rule" "$CC_CUR" "$want"
	add_row "$key" "${CC_CUR:-(empty)}" "$rec" "$CC_STATUS"
	[[ $CC_STATUS == OK ]] || sysctl_not_ok=$((sysctl_not_ok + 1))
done

# ---------------------------------------------------------------- limits
limits_file=/proc/$$/limits
limits_of="check.sh's own (inherited by a server started from this shell)"
if [[ -n $pid ]]; then
	limits_file=/proc/$pid/limits
	limits_of="pid $pid"
	[[ -r $limits_file ]] || cc_die "cannot read $limits_file (is pid $pid running?)"
fi
limits=$(<"$limits_file") || cc_die "cannot read $limits_file"

# limit_field NAME COLUMN(4=soft 5=hard): prints the value ("unlimited" kept)
limit_field() {
	awk -v name="$1" -v col="$2" 'index($0, name) == 1 {
		n = split(name, parts, " "); print $(n + col - 3); exit }' <<<"$limits"
}
nofile_soft=$(limit_field "Max open files" 4)
nofile_hard=$(limit_field "Max open files" 5)
memlock_soft=$(limit_field "Max locked memory" 4)
memlock_hard=$(limit_field "Max locked memory" 5)
if ! cc_is_uint "$nofile_soft" || ! cc_is_uint "$nofile_hard"; then
	cc_die "cannot parse 'Max open files' in $limits_file"
fi

plan=${target:-$DEFAULT_TARGET}
nofile_need=$((plan + FD_SLACK))
for which in soft hard; do
	v=nofile_$which
	st=OK
	((${!v} >= nofile_need)) || st=LOW
	add_row "rlimit.nofile.$which" "${!v}" ">= $nofile_need" "$st"
done

ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
memlock_need=$((ncpu * IO_MEMORY))
for which in soft hard; do
	v=memlock_$which
	val=${!v}
	st=OK
	if [[ $val != unlimited ]]; then
		if ! cc_is_uint "$val" || ((val < memlock_need)); then st=LOW; fi
	fi
	add_row "rlimit.memlock.$which" "$val" ">= $memlock_need (64M advised)" "$st"
done
if [[ $memlock_soft != unlimited ]] && cc_is_uint "$memlock_soft" &&
	((memlock_soft < MEMLOCK_ADVISED)); then
	WARN+=("RLIMIT_MEMLOCK $memlock_soft B covers $ncpu cores x 64 KiB io_memory; LimitMEMLOCK=64M in corecast.service leaves room for more cores and io_memory")
fi

# ---------------------------------------------------------------- io_uring
uring_disabled=absent
uring_ok=1   # 0 = io_uring cannot be used: the box is not ready for any target
if [[ -r /proc/sys/kernel/io_uring_disabled ]]; then
	uring_disabled=$(</proc/sys/kernel/io_uring_disabled)
	case $uring_disabled in
	0) add_row kernel.io_uring_disabled 0 "= 0" OK ;;
	1)
		grp=$(cat /proc/sys/kernel/io_uring_group 2>/dev/null || echo '?')
		add_row kernel.io_uring_disabled 1 "= 0" DIFF
		WARN+=("kernel.io_uring_disabled=1: only root and members of group $grp (kernel.io_uring_group) may create rings; corecast's user must be one of them")
		;;
	*)
		add_row kernel.io_uring_disabled "$uring_disabled" "= 0" FAIL
		WARN+=("kernel.io_uring_disabled=$uring_disabled: io_uring is off for everyone; corecast cannot start")
		uring_ok=0
		;;
	esac
else
	add_row kernel.io_uring_disabled "(absent: kernel < 6.6)" "= 0" OK
fi

# A real probe: io_uring_setup(4 entries) via perl's syscall() (425 on x86_64,
# arm64 and every architecture using the generic syscall table).
# shellcheck disable=SC2016 # perl code, expanded by perl
probe_prog='my $p = "\0" x 120; my $fd = syscall(425, 4, $p);
if ($fd < 0) { printf "errno %d (%s)\n", $!+0, $!; exit 1 }
my ($sq, $cq, $fl, $cpu, $idle, $feat) = unpack("L6", $p);
printf "ok: sq=%d cq=%d features=0x%x\n", $sq, $cq, $feat; exit 0'
uring_probe=
uring_probe_status=UNKNOWN
if command -v perl >/dev/null 2>&1; then
	if uring_probe=$(perl -e "$probe_prog" 2>&1); then
		uring_probe_status=OK
	else
		uring_probe_status=FAIL
		uring_ok=0
		uring_probe="io_uring_setup failed: $uring_probe"
		WARN+=("io_uring probe failed ($uring_probe): seccomp (Docker >= 25 default profile), kernel.io_uring_disabled or a kernel without io_uring; corecast cannot start here")
	fi
else
	uring_probe="not probed (perl not installed)"
fi
add_row io_uring.probe "$uring_probe" "io_uring_setup works" "$uring_probe_status"
[[ -z $pid ]] || WARN+=("the io_uring probe ran as check.sh, not inside pid $pid's sandbox")

# ---------------------------------------------------------------- capacity
read -r file_nr_alloc _ _ </proc/sys/fs/file-nr
nr_open=$(</proc/sys/fs/nr_open)
file_max=$(</proc/sys/fs/file-max)
mem_total_kb=$(awk '$1 == "MemTotal:" {print $2}' /proc/meminfo)
mem_avail_kb=$(awk '$1 == "MemAvailable:" {print $2}' /proc/meminfo)
if ! cc_is_uint "$mem_total_kb" || ! cc_is_uint "$mem_avail_kb"; then
	cc_die "cannot read /proc/meminfo"
fi
mem_total=$((mem_total_kb * 1024))
mem_avail=$((mem_avail_kb * 1024))

# Per-socket figures: command line > benches/RESULTS.md > defaults.
figures_source=defaults
figures_note=
res_kernel=
res_corecast=
if [[ -r $results ]]; then
	line=$(grep -E '^[[:space:]]*capacity-figures: kernel_bytes_per_socket=[0-9]+ corecast_bytes_per_socket=[0-9]+[[:space:]]*$' "$results" | tail -n 1 || true)
	if [[ -n $line ]]; then
		res_kernel=$(sed -E 's/.*kernel_bytes_per_socket=([0-9]+).*/\1/' <<<"$line")
		res_corecast=$(sed -E 's/.*corecast_bytes_per_socket=([0-9]+).*/\1/' <<<"$line")
		figures_source="benches/RESULTS.md"
	else
		figures_note="using defaults: $results has no 'capacity-figures:' line"
	fi
else
	figures_note="using defaults: $results not found"
fi
if [[ -n $kernel_bytes || -n $corecast_bytes ]]; then
	figures_source="command line"
	figures_note=
fi
kernel_bytes=${kernel_bytes:-${res_kernel:-$DEFAULT_KERNEL_BYTES}}
corecast_bytes=${corecast_bytes:-${res_corecast:-$DEFAULT_CORECAST_BYTES}}
[[ $figures_source != benches/RESULTS.md ]] || figures_note="per-socket figures from $results"
per_socket=$((kernel_bytes + corecast_bytes))
((per_socket > 0)) || cc_die "per-socket bytes must be > 0"

if [[ -n $reserve_mb ]]; then
	reserve=$((reserve_mb * 1048576))
	reserve_text="--reserve-mb $reserve_mb"
else
	reserve=$((536870912 + mem_total / 20))
	reserve_text="512 MiB + 5% of MemTotal"
fi
mem_usable=$((mem_avail - reserve))
((mem_usable > 0)) || mem_usable=0
mem_cap=$((mem_usable / per_socket))

# Without --pid the estimate assumes corecast raises its soft RLIMIT_NOFILE to
# the hard limit at start-up; a running process's soft limit is what it has.
if [[ -n $pid ]]; then
	rl=$nofile_soft
	rl_which=soft
	((nofile_soft < nofile_hard)) || rl_which=hard
else
	rl_which=hard
	rl=$nofile_hard
	if ((nofile_soft < nofile_hard)); then
		WARN+=("soft RLIMIT_NOFILE $nofile_soft < hard $nofile_hard: the estimate assumes corecast raises its soft limit to the hard one at start-up")
	fi
fi
fd_rlimit=$((rl - FD_SLACK))
fd_nr_open=$((nr_open - FD_SLACK))
fd_file_max=$((file_max - file_nr_alloc))

cap=$fd_rlimit
factor="RLIMIT_NOFILE $rl_which=$rl"
factor_kind=RLIMIT_NOFILE
if ((fd_nr_open < cap)); then cap=$fd_nr_open; factor="fs.nr_open=$nr_open"; factor_kind=fs.nr_open; fi
if ((fd_file_max < cap)); then cap=$fd_file_max; factor="fs.file-max=$file_max ($file_nr_alloc allocated)"; factor_kind=fs.file-max; fi
fd_cap=$cap
if ((mem_cap < cap)); then cap=$mem_cap; factor=memory; factor_kind=memory; fi
((cap > 0)) || cap=0
if [[ $factor_kind == memory ]]; then
	summary="capacity: $cap connections (limited by memory); file descriptors would allow $(cc_commas "$fd_cap")"
else
	summary="capacity: $cap connections (limited by $factor); memory would allow $(cc_commas "$mem_cap")"
fi

# A loaded nf_conntrack tracks nothing until a rule (NAT, a stateful filter) in this network
# namespace uses it: benches/million.sh held 1,000,000 connections with nf_conntrack_max 262,144
# and nf_conntrack_count 0. Only a table in use limits connections.
conntrack_tracking=0
if ((conntrack_loaded)); then
	ct_max=$(</proc/sys/net/netfilter/nf_conntrack_max)
	ct_count=$(cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0)
	cc_is_uint "$ct_count" || ct_count=0
	((ct_count == 0)) || conntrack_tracking=1
	if ((ct_max < cap)); then
		if ((conntrack_tracking)); then
			WARN+=("nf_conntrack tracks connections here ($ct_count now) and nf_conntrack_max=$ct_max < $cap: if it tracks port 6001, connections beyond $ct_max are dropped (raise it or NOTRACK the port)")
		else
			WARN+=("nf_conntrack is loaded but tracks no connection in this network namespace (nf_conntrack_count 0: no rule uses it), so nf_conntrack_max=$ct_max limits nothing now; a NAT or stateful firewall rule would make it drop connections beyond $ct_max")
		fi
	fi
fi

# One process holds at most fd_rlimit connections. Where the hard RLIMIT_NOFILE cannot be
# raised, several nodes share the port (--share-port, one --redis) and behave as one server;
# SO_REUSEPORT spreads connections by hash, so each node is planned at 4/5 of its limit.
per_node=$((fd_rlimit * 4 / 5))
box_cap=$mem_cap
((fd_file_max >= box_cap)) || box_cap=$fd_file_max
nodes_needed=1
if ((per_node > 0 && plan > fd_rlimit)); then
	nodes_needed=$(((plan + per_node - 1) / per_node))
	WARN+=("one process holds at most $fd_rlimit connections (RLIMIT_NOFILE $rl_which=$rl): for $(cc_commas "$plan") run $nodes_needed nodes sharing the port (--share-port and one --redis, as benches/million.sh does); memory and fs.file-max allow $(cc_commas "$box_cap") on this box")
fi
cg_line=$(grep -m1 '^0::' "/proc/${pid:-$$}/cgroup" 2>/dev/null || true)
if [[ -n $cg_line && -r /sys/fs/cgroup${cg_line#0::}/memory.max ]]; then
	cg_max=$(<"/sys/fs/cgroup${cg_line#0::}/memory.max")
	if cc_is_uint "$cg_max" && ((cg_max < mem_avail)); then
		WARN+=("cgroup memory.max=$cg_max is below MemAvailable; the memory figure overstates what this cgroup may use")
	fi
fi

# ---------------------------------------------------------------- target
ready=
reasons=()
if [[ -n $target ]]; then
	((cap >= target)) || reasons+=("capacity $cap < $target, limited by $factor")
	((uring_ok)) || reasons+=("io_uring unavailable")
	if ((conntrack_tracking)) && ((ct_max < target)); then
		reasons+=("nf_conntrack_max=$ct_max < $target")
	fi
	if ((${#reasons[@]} == 0)); then ready=1; else ready=0; fi
fi

# ---------------------------------------------------------------- output
json_str() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	printf '"%s"' "$s"
}
json_num_or_str() {
	if cc_is_uint "$1"; then printf '%s' "$1"; else json_str "$1"; fi
}

if ((json)); then
	{
		printf '{\n'
		printf '  "capacity": %s,\n' "$cap"
		printf '  "limited_by": %s,\n' "$(json_str "$factor_kind")"
		printf '  "limited_by_detail": %s,\n' "$(json_str "$factor")"
		printf '  "fd_capacity": %s,\n' "$fd_cap"
		printf '  "memory_capacity": %s,\n' "$mem_cap"
		printf '  "nodes_needed": %s,\n' "$nodes_needed"
		printf '  "box_capacity": %s,\n' "$box_cap"
		printf '  "fd_slack": %s,\n' "$FD_SLACK"
		printf '  "rlimit_nofile_soft": %s,\n' "$nofile_soft"
		printf '  "rlimit_nofile_hard": %s,\n' "$nofile_hard"
		printf '  "rlimit_nofile_used": %s,\n' "$(json_str "$rl_which")"
		printf '  "rlimit_memlock_soft": %s,\n' "$(json_num_or_str "$memlock_soft")"
		printf '  "rlimit_memlock_hard": %s,\n' "$(json_num_or_str "$memlock_hard")"
		printf '  "limits_of": %s,\n' "$(json_str "$limits_of")"
		printf '  "fs_nr_open": %s,\n' "$nr_open"
		printf '  "fs_file_max": %s,\n' "$file_max"
		printf '  "fs_file_nr_allocated": %s,\n' "$file_nr_alloc"
		printf '  "mem_total_bytes": %s,\n' "$mem_total"
		printf '  "mem_available_bytes": %s,\n' "$mem_avail"
		printf '  "reserve_bytes": %s,\n' "$reserve"
		printf '  "kernel_bytes_per_socket": %s,\n' "$kernel_bytes"
		printf '  "corecast_bytes_per_socket": %s,\n' "$corecast_bytes"
		printf '  "figures_source": %s,\n' "$(json_str "$figures_source")"
		printf '  "io_uring_disabled": %s,\n' "$(json_num_or_str "$uring_disabled")"
		printf '  "io_uring_probe": %s,\n' "$(json_str "$uring_probe_status")"
		printf '  "io_uring_probe_detail": %s,\n' "$(json_str "$uring_probe")"
		if [[ -n $target ]]; then
			printf '  "target": %s,\n' "$target"
			printf '  "ready": %s,\n' "$([[ $ready == 1 ]] && echo true || echo false)"
		else
			printf '  "target": null,\n  "ready": null,\n'
		fi
		printf '  "checks": [\n'
		nrows=${#ROWS[@]}
		for j in "${!ROWS[@]}"; do
			IFS='|' read -r item cur rec st <<<"${ROWS[j]}"
			comma=,
			((j + 1 < nrows)) || comma=
			printf '    {"item": %s, "current": %s, "recommended": %s, "status": %s}%s\n' \
				"$(json_str "$item")" "$(json_str "$cur")" "$(json_str "$rec")" "$(json_str "$st")" "$comma"
		done
		printf '  ],\n'
		printf '  "warnings": ['
		sep=
		for w in "${WARN[@]}"; do printf '%s\n    %s' "$sep" "$(json_str "$w")"; sep=,; done
		((${#WARN[@]} == 0)) || printf '\n  '
		printf '],\n'
		printf '  "summary": %s\n' "$(json_str "$summary")"
		printf '}\n'
	}
else
	printf 'corecast tuning check (read-only): %s, kernel %s, %s CPUs\n' \
		"$(uname -n)" "$(uname -r)" "$ncpu"
	printf 'sysctls: %s; limits: %s\n\n' "$conf" "$limits_of"
	fmt='%-36s %-26s %-26s %s\n'
	# shellcheck disable=SC2059
	printf "$fmt" ITEM CURRENT RECOMMENDED STATUS
	for r in "${ROWS[@]}"; do
		IFS='|' read -r item cur rec st <<<"$r"
		# shellcheck disable=SC2059
		printf "$fmt" "$item" "$cur" "$rec" "$st"
	done
	printf '\n%s sysctl(s) differ from the recommendation (tuning/apply.sh fixes them at runtime).\n' "$sysctl_not_ok"
	printf '\ncapacity estimate (tuning/README.md):\n'
	printf '  fd:     RLIMIT_NOFILE soft=%s hard=%s, using %s: %s - %s slack = %s\n' \
		"$nofile_soft" "$nofile_hard" "$rl_which" "$rl" "$FD_SLACK" "$fd_rlimit"
	printf '  fd:     fs.nr_open %s - %s slack = %s\n' "$nr_open" "$FD_SLACK" "$fd_nr_open"
	printf '  fd:     fs.file-max %s - %s allocated (fs.file-nr) = %s\n' "$file_max" "$file_nr_alloc" "$fd_file_max"
	printf '  memory: MemAvailable %s B - reserve %s B (%s; MemTotal %s B) = %s B\n' \
		"$(cc_commas "$mem_avail")" "$(cc_commas "$reserve")" "$reserve_text" "$(cc_commas "$mem_total")" "$(cc_commas "$mem_usable")"
	printf '  memory: per socket %s B kernel + %s B corecast = %s B (%s)\n' \
		"$kernel_bytes" "$corecast_bytes" "$per_socket" "$figures_source"
	printf '  memory: %s / %s = %s connections\n' "$(cc_commas "$mem_usable")" "$per_socket" "$(cc_commas "$mem_cap")"
	[[ -z $figures_note ]] || printf 'note: %s\n' "$figures_note"
	for w in "${WARN[@]}"; do printf 'warning: %s\n' "$w"; done
	if [[ -n $target ]]; then
		if ((ready)); then
			printf 'target: %s connections: ready\n' "$target"
		else
			why=$(IFS=';'; echo "${reasons[*]}")
			printf 'target: %s connections: NOT ready (%s)\n' "$target" "${why//;/; }"
		fi
	fi
	printf '%s\n' "$summary"
fi

if [[ $ready == 0 ]]; then exit 1; fi
exit 0
