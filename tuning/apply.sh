#!/usr/bin/env bash
# apply.sh: apply tuning/sysctl.d/99-corecast.conf to the running kernel,
# remembering the previous values so that --revert can restore them.
# Runtime only: to keep the settings across reboots install the file into
# /etc/sysctl.d/ (see tuning/README.md).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

CC_PROG=apply.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

readonly EXIT_NOT_ROOT=77

usage() {
	cat <<'EOF'
usage: tuning/apply.sh [--dry-run] [--revert] [--only-net | --only-global]
                       [--conf FILE] [--state FILE] [--force]
Applies tuning/sysctl.d/99-corecast.conf to the running kernel. Idempotent:
values that already satisfy a setting are left alone ("at least" settings are
only ever raised, "at most" only lowered). Needs root.

  --dry-run      print what would change (or be restored); write nothing
  --revert       restore the values saved by earlier runs, then forget them
  --only-net     only keys that belong to the current network namespace
                 (found by probing a fresh namespace with unshare -n); use
                 this inside containers / `ip netns exec`
  --only-global  only the other keys (fs.*, net.ipv4.tcp_mem, ...)
  --conf FILE    settings file (default: tuning/sysctl.d/99-corecast.conf)
  --state FILE   where previous values are saved (default: $CORECAST_TUNING_STATE,
                 else /run/corecast-tuning/state.net-<netns inode>)
  --force        revert even if the state file was written in another
                 network namespace

Exit status: 0 ok, 1 a write failed, 2 usage error, 77 not root.
EOF
}

dry_run=0
revert=0
only=
force=0
conf=$HERE/sysctl.d/99-corecast.conf
state=
while (($#)); do
	case $1 in
	--dry-run) dry_run=1; shift ;;
	--revert) revert=1; shift ;;
	--only-net) [[ -z $only ]] || cc_die "--only-net and --only-global exclude each other"; only=net; shift ;;
	--only-global) [[ -z $only ]] || cc_die "--only-net and --only-global exclude each other"; only=global; shift ;;
	--conf) [[ -n ${2:-} ]] || cc_die "--conf needs a file"; conf=$2; shift 2 ;;
	--state) [[ -n ${2:-} ]] || cc_die "--state needs a file"; state=$2; shift 2 ;;
	--force) force=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; cc_die "unknown option: $1" ;;
	esac
done

uid=$(id -u)
if ((uid != 0)); then
	printf 'apply.sh: refusing to run without root: it writes kernel settings under /proc/sys (running as uid %s).\n' "$uid" >&2
	hint=
	((!dry_run)) || hint=' --dry-run'
	printf 'apply.sh: re-run it as root (e.g. sudo tuning/apply.sh%s), or use tuning/check.sh for a read-only report.\n' \
		"$hint" >&2
	exit "$EXIT_NOT_ROOT"
fi

netns=$(cc_netns_id)
state=${state:-${CORECAST_TUNING_STATE:-/run/corecast-tuning/state.net-$netns}}
cc_load_conf "$conf"

if cc_in_initial_netns; then
	ns_text="net:[$netns], the initial network namespace"
else
	ns_text="net:[$netns], not the initial network namespace: global keys here change the whole host"
fi

# ------------------------------------------------------------ scope probe
# A key is per-network-namespace if a freshly created namespace has its own
# writable copy. Global keys are either absent there (tcp_mem,
# netdev_max_backlog) or read-only (nf_conntrack_max), and fs.* is never per-netns.
declare -A PER_NETNS=()
scope_known=0
net_keys=()
for k in "${CC_KEYS[@]}"; do [[ $k == net.* ]] && net_keys+=("$k"); done
# shellcheck disable=SC2016 # the single-quoted script is run by the inner bash
if command -v unshare >/dev/null 2>&1 &&
	probe=$(unshare --net -- bash -c 'for k; do [[ -w /proc/sys/${k//.//} ]] && printf "%s\n" "$k"; done; exit 0' _ "${net_keys[@]}" 2>/dev/null); then
	scope_known=1
	while IFS= read -r k; do [[ -n $k ]] && PER_NETNS[$k]=1; done <<<"$probe"
elif [[ -n $only ]]; then
	cc_die "cannot tell per-namespace keys from global ones: 'unshare --net' failed (util-linux missing?)"
fi

scope_of() {
	if ((!scope_known)); then
		printf 'scope unknown'
	elif [[ -n ${PER_NETNS[$1]:-} ]]; then
		printf 'per-netns'
	else
		printf 'global'
	fi
}

# Does --only-net / --only-global select this key?
selected() {
	case $only in
	net) [[ -n ${PER_NETNS[$1]:-} ]] ;;
	global) [[ -z ${PER_NETNS[$1]:-} ]] ;;
	*) return 0 ;;
	esac
}

# ------------------------------------------------------------ state file
# Format: comment header lines, then one "key|original|applied" line per key
# apply.sh changed. Only the first original value of a key is kept.
declare -A ST_ORIG=() ST_APPLIED=()
ST_ORDER=()
st_netns=

load_state() {
	[[ -e $state ]] || return 0
	local line k o a
	while IFS= read -r line; do
		if [[ $line == '# netns='* ]]; then
			st_netns=${line#'# netns='}
			continue
		fi
		[[ -z $line || $line == '#'* ]] && continue
		IFS='|' read -r k o a <<<"$line"
		[[ -n $k ]] || continue
		[[ -n ${ST_ORIG[$k]+x} ]] || ST_ORDER+=("$k")
		ST_ORIG[$k]=$o
		ST_APPLIED[$k]=$a
	done <"$state"
}

save_state() {
	local k tmp
	if ((${#ST_ORDER[@]} == 0)); then
		rm -f -- "$state"
		return 0
	fi
	mkdir -p -- "$(dirname -- "$state")"
	tmp=$state.tmp.$$
	{
		printf '# corecast tuning/apply.sh saved values; "tuning/apply.sh --revert" restores them\n'
		printf '# netns=%s\n' "${st_netns:-$netns}"
		printf '# key|original|applied\n'
		for k in "${ST_ORDER[@]}"; do
			printf '%s|%s|%s\n' "$k" "${ST_ORIG[$k]}" "${ST_APPLIED[$k]}"
		done
	} >"$tmp"
	mv -f -- "$tmp" "$state"
}

forget_key() {
	local k=$1 x
	local -a keep=()
	unset "ST_ORIG[$k]" "ST_APPLIED[$k]"
	for x in "${ST_ORDER[@]}"; do [[ $x == "$k" ]] || keep+=("$x"); done
	ST_ORDER=("${keep[@]}")
}

# write_key KEY VALUE [RULE WANT]: write, read back into CC_CUR and check it.
# The kernel may print a value differently from how it was written (it sorts
# ip_local_reserved_ports), so with a RULE the read-back only has to satisfy it.
write_key() {
	local key=$1 val=$2 rule=${3:-} want=${4:-} p err
	p=$(cc_path "$key")
	if ! err=$( { printf '%s\n' "$val" >"$p"; } 2>&1); then
		printf '  FAILED  %s: writing "%s": %s\n' "$key" "$val" "${err##*: }"
		return 1
	fi
	cc_read "$key" || true
	[[ $CC_CUR == "$val" ]] && return 0
	if [[ -n $rule ]]; then
		local got=$CC_CUR
		cc_eval "$rule" "$got" "$want"
		CC_CUR=$got
		[[ $CC_STATUS == OK ]] && return 0
	fi
	printf '  FAILED  %s: wrote "%s" but the kernel now reports "%s"\n' "$key" "$val" "$CC_CUR"
	return 1
}

load_state
failures=0

# ------------------------------------------------------------ revert
if ((revert)); then
	if ((${#ST_ORDER[@]} == 0)); then
		printf 'apply.sh: nothing to revert (no saved values in %s)\n' "$state"
		exit 0
	fi
	if [[ -n $st_netns && $st_netns != "$netns" ]] && ((!force)); then
		cc_die "$state was written in network namespace net:[$st_netns] but this is net:[$netns]; run --revert there, or add --force"
	fi
	printf 'apply.sh: %s saved values from %s; in %s\n' \
		"$( ((dry_run)) && echo 'dry run: would restore' || echo restoring)" "$state" "$ns_text"
	restored=0
	for key in "${ST_ORDER[@]}"; do
		selected "$key" || continue
		orig=${ST_ORIG[$key]}
		applied=${ST_APPLIED[$key]}
		if ! cc_read "$key"; then
			printf '  skip    %s: not present here\n' "$key"
			continue
		fi
		cur=$CC_CUR
		note=
		[[ $cur == "$applied" ]] || note=" (note: it was changed to \"$cur\" after apply.sh set \"$applied\")"
		if [[ $cur == "$orig" ]]; then
			printf '  ok      %s = "%s" (already the saved value)\n' "$key" "$orig"
		elif ((dry_run)); then
			printf '  restore %s: "%s" -> "%s"%s\n' "$key" "$cur" "$orig" "$note"
			restored=$((restored + 1))
			continue
		else
			printf '  restore %s: "%s" -> "%s"%s\n' "$key" "$cur" "$orig" "$note"
			if ! write_key "$key" "$orig"; then
				failures=$((failures + 1))
				continue
			fi
			restored=$((restored + 1))
		fi
		((dry_run)) || forget_key "$key"
	done
	if ((dry_run)); then
		printf 'apply.sh: dry run: %s value(s) would be restored; nothing written\n' "$restored"
	else
		save_state
		printf 'apply.sh: restored %s value(s), %s failure(s)%s\n' "$restored" "$failures" \
			"$( ((${#ST_ORDER[@]})) && echo "; $state still holds ${#ST_ORDER[@]} value(s)" || echo "; removed $state")"
	fi
	((failures == 0)) || exit 1
	exit 0
fi

# ------------------------------------------------------------ apply
case $only in
net) only_text=', only per-netns keys' ;;
global) only_text=', only global keys' ;;
*) only_text= ;;
esac
printf 'apply.sh: %s %s%s; in %s\n' "$( ((dry_run)) && echo 'dry run, nothing will be written:' || echo applying)" \
	"$conf" "$only_text" "$ns_text"
((scope_known)) || printf 'apply.sh: warning: unshare --net failed, cannot tell per-netns keys from global ones\n'
n_change=0 n_ok=0 n_skip=0
for i in "${!CC_KEYS[@]}"; do
	key=${CC_KEYS[i]}
	want=${CC_WANT[i]}
	rule=${CC_RULE[i]}
	selected "$key" || continue
	scope=$(scope_of "$key")
	if ! cc_read "$key"; then
		if ((CC_OPTIONAL[i])); then
			printf '  skip    %s: not present (optional; nf_conntrack not loaded?)\n' "$key"
		else
			printf '  skip    %s: not present in this kernel/namespace\n' "$key"
		fi
		n_skip=$((n_skip + 1))
		continue
	fi
	cur=$CC_CUR
	cc_eval "$rule" "$cur" "$want"
	new=$CC_NEW
	if [[ $CC_STATUS == OK ]]; then
		printf '  ok      %s = "%s" (%s) [%s]\n' "$key" "$cur" "$(cc_rule_text "$rule" "$want")" "$scope"
		n_ok=$((n_ok + 1))
		continue
	fi
	if [[ ! -w $(cc_path "$key") ]]; then
		printf '  skip    %s = "%s": read-only here (%s key; set it in the initial namespace)\n' "$key" "$cur" "$scope"
		n_skip=$((n_skip + 1))
		continue
	fi
	printf '  change  %s: "%s" -> "%s" [%s]\n' "$key" "$cur" "$new" "$scope"
	n_change=$((n_change + 1))
	((dry_run)) && continue
	# Save the original first, so an interrupted run can still be reverted.
	added=0
	if [[ -z ${ST_ORIG[$key]+x} ]]; then
		ST_ORIG[$key]=$cur
		ST_ORDER+=("$key")
		added=1
	fi
	ST_APPLIED[$key]=$new
	save_state
	if write_key "$key" "$new" "$rule" "$want"; then
		if [[ $CC_CUR != "$new" ]]; then
			ST_APPLIED[$key]=$CC_CUR   # as the kernel prints it
			save_state
		fi
	else
		failures=$((failures + 1))
		if ((added)); then
			forget_key "$key"
			save_state
		fi
	fi
done

if ((dry_run)); then
	printf 'apply.sh: dry run: %s to change, %s already ok, %s skipped; nothing written\n' "$n_change" "$n_ok" "$n_skip"
else
	saved=
	((n_change == 0)) || saved="; previous values saved in $state (undo: tuning/apply.sh --revert)"
	printf 'apply.sh: %s changed, %s already ok, %s skipped, %s failed%s\n' \
		"$((n_change - failures))" "$n_ok" "$n_skip" "$failures" "$saved"
fi
((failures == 0)) || exit 1
exit 0
