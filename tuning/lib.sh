# shellcheck shell=bash
# CC_CUR, CC_STATUS and CC_NEW are outputs read by the sourcing scripts:
# shellcheck disable=SC2034
# lib.sh: helpers shared by tuning/apply.sh and tuning/check.sh (sourced, not run).
# Reads tuning/sysctl.d/99-corecast.conf and judges current values against it.

# Parsed settings, in file order.
CC_KEYS=()      # sysctl key, e.g. net.core.somaxconn
CC_WANT=()      # recommended value, whitespace-normalised
CC_RULE=()      # at least | at most | exactly | covers | includes
CC_OPTIONAL=()  # 1 if the key had a leading "-" (absent key is fine)

cc_die() {
	printf '%s: %s\n' "${CC_PROG:-tuning}" "$*" >&2
	exit 2
}

# Collapse runs of blanks/tabs/newlines to single spaces and trim.
cc_norm() {
	local s=$1
	s=${s//$'\t'/ }
	s=${s//$'\n'/ }
	while [[ $s == *'  '* ]]; do s=${s//'  '/ }; done
	s=${s# }
	s=${s% }
	printf '%s' "$s"
}

# /proc/sys path of a key.
cc_path() {
	printf '/proc/sys/%s' "${1//.//}"
}

# Current value of a key (normalised) in CC_CUR; returns 1 if the key is absent.
cc_read() {
	local p
	p=$(cc_path "$1")
	CC_CUR=
	[[ -e $p ]] || return 1
	local raw
	raw=$(<"$p") || return 1
	CC_CUR=$(cc_norm "$raw")
}

# Load the sysctl.d file into the CC_* arrays.
cc_load_conf() {
	local file=$1 line key val opt rule
	[[ -r $file ]] || cc_die "cannot read $file"
	local -A rules=()
	# Rules come from the comment lines "# <key> [<rule>]: ...".
	while IFS= read -r line; do
		if [[ $line =~ ^#\ ([a-z0-9_.-]+)\ \[(at\ least|at\ most|exactly|covers|includes)\]: ]]; then
			rules[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
		fi
	done <"$file"
	while IFS= read -r line; do
		[[ $line =~ ^[[:space:]]*([#\;]|$) ]] && continue
		[[ $line == *=* ]] || cc_die "$file: cannot parse line: $line"
		key=$(cc_norm "${line%%=*}")
		val=$(cc_norm "${line#*=}")
		opt=0
		if [[ $key == -* ]]; then
			opt=1
			key=${key#-}
		fi
		rule=${rules[$key]:-}
		[[ -n $rule ]] || cc_die "$file: $key has no '# $key [rule]: ...' comment line"
		CC_KEYS+=("$key")
		CC_WANT+=("$val")
		CC_RULE+=("$rule")
		CC_OPTIONAL+=("$opt")
	done <"$file"
	((${#CC_KEYS[@]} > 0)) || cc_die "$file: no settings found"
}

# A decimal that fits bash's signed 64-bit arithmetic (fs.file-max may be
# LONG_MAX = 9223372036854775807 on systemd-booted machines).
cc_is_uint() {
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	local d=$1
	while [[ $d == 0?* ]]; do d=${d#0}; done
	((${#d} < 19)) && return 0
	((${#d} == 19)) || return 1
	local head=$((10#${d:0:18})) last=${d:18}
	((head < 922337203685477580 || (head == 922337203685477580 && last <= 7)))
}

# Is port $1 inside the comma list $2 (entries N or A-B)?
cc_port_in_list() {
	local port=$1 list=$2 item lo hi
	local IFS=,
	for item in $list; do
		item=${item// /}
		[[ -n $item ]] || continue
		lo=${item%-*}
		hi=${item#*-}
		if ! cc_is_uint "$lo" || ! cc_is_uint "$hi"; then continue; fi
		((port >= lo && port <= hi)) && return 0
	done
	return 1
}

# cc_eval RULE CURRENT WANT
# Sets CC_STATUS (OK, LOW, HIGH or DIFF) and CC_NEW (the value apply.sh would
# write: the current value changed as little as possible to satisfy the rule).
cc_eval() {
	local rule=$1 cur=$2 want=$3
	local -a c w n
	local i
	CC_STATUS=OK
	CC_NEW=$cur
	case $rule in
	exactly)
		if [[ $cur != "$want" ]]; then
			CC_STATUS=DIFF
			CC_NEW=$want
		fi
		;;
	'at least' | 'at most')
		read -r -a c <<<"$cur"
		read -r -a w <<<"$want"
		if ((${#c[@]} != ${#w[@]})); then
			CC_STATUS=DIFF
			CC_NEW=$want
			return 0
		fi
		for i in "${!w[@]}"; do
			if ! cc_is_uint "${c[i]}" || ! cc_is_uint "${w[i]}"; then
				CC_STATUS=DIFF
				CC_NEW=$want
				return 0
			fi
			n[i]=${c[i]}
			if [[ $rule == 'at least' ]] && ((c[i] < w[i])); then
				CC_STATUS=LOW
				n[i]=${w[i]}
			elif [[ $rule == 'at most' ]] && ((c[i] > w[i])); then
				CC_STATUS=HIGH
				n[i]=${w[i]}
			fi
		done
		CC_NEW="${n[*]}"
		;;
	covers)
		read -r -a c <<<"$cur"
		read -r -a w <<<"$want"
		if ((${#c[@]} != 2)) || ! cc_is_uint "${c[0]}" || ! cc_is_uint "${c[1]}"; then
			CC_STATUS=DIFF
			CC_NEW=$want
			return 0
		fi
		n=("${c[0]}" "${c[1]}")
		((c[0] > w[0])) && n[0]=${w[0]}
		((c[1] < w[1])) && n[1]=${w[1]}
		if [[ "${n[*]}" != "${c[*]}" ]]; then
			CC_STATUS=LOW
			CC_NEW="${n[*]}"
		fi
		;;
	includes)
		local port missing=
		local IFS=,
		for port in $want; do
			port=${port// /}
			cc_port_in_list "$port" "$cur" || missing+=${missing:+,}$port
		done
		unset IFS
		if [[ -n $missing ]]; then
			CC_STATUS=DIFF
			CC_NEW=${cur:+$cur,}$missing
		fi
		;;
	*)
		cc_die "unknown rule '$rule'"
		;;
	esac
}

# Human-readable form of a rule + value, e.g. ">= 65535".
cc_rule_text() {
	case $1 in
	'at least') printf '>= %s' "$2" ;;
	'at most') printf '<= %s' "$2" ;;
	exactly) printf '= %s' "$2" ;;
	covers) printf 'covers %s' "$2" ;;
	includes) printf 'has %s' "$2" ;;
	esac
}

# 1234567 -> 1,234,567
cc_commas() {
	local num=$1 out='' sign=''
	if [[ $num == -* ]]; then
		sign=-
		num=${num#-}
	fi
	while ((${#num} > 3)); do
		out=,${num: -3}$out
		num=${num:0:${#num}-3}
	done
	printf '%s%s%s' "$sign" "$num" "$out"
}

# Inode number of the current network namespace, e.g. 4026531833.
cc_netns_id() {
	local l
	l=$(readlink /proc/self/ns/net 2>/dev/null) || l=unknown
	l=${l#net:[}
	printf '%s' "${l%]}"
}

# net.ipv4.tcp_mem and net.core.netdev_max_backlog are registered only in the
# initial network namespace, so their presence tells which one we are in.
cc_in_initial_netns() {
	[[ -e /proc/sys/net/ipv4/tcp_mem ]]
}
