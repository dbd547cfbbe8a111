#!/usr/bin/env bash
# bench/cache/run.sh: our cache (pkg/cache, via the small main beside this
# script) against redis-server on the same machine, in one run, with
# redis-benchmark -t set,get -r 100000 -d 16 -c 50 at -P 1 and -P 16.
#
# Each (target, -P) pair is measured ROUNDS times, alternating targets so
# that background load hits both alike; the table shows the median of the
# rounds and the ratio ours/Redis.
#
# Environment: ROUNDS (3), N1 requests per test at -P 1 (300000), N16 at
# -P 16 (2000000), OURS_ADDR (127.0.0.21:6390), REDIS_ADDR (127.0.0.22:6391),
# OURS_FLAGS (extra flags for our server).
#
# Needs: go, redis-server and redis-benchmark (apt-get install -y
# redis-server redis-tools). Loopback only; stops both servers on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
N1=${N1:-300000}
N16=${N16:-2000000}
OURS_ADDR=${OURS_ADDR:-127.0.0.21:6390}
REDIS_ADDR=${REDIS_ADDR:-127.0.0.22:6391}
OURS_FLAGS=${OURS_FLAGS:-}

for bin in go redis-server redis-benchmark redis-cli; do
	command -v "$bin" >/dev/null || { echo "run.sh: $bin not found; apt-get install -y redis-server redis-tools" >&2; exit 1; }
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== building our cache server"
(cd "$root" && go build -o "$tmp/cache" ./bench/cache)

echo "== starting redis-server on $REDIS_ADDR (persistence off) and ours on $OURS_ADDR"
redis-server --bind "${REDIS_ADDR%:*}" --port "${REDIS_ADDR##*:}" --save '' --appendonly no \
	--dir "$tmp" --logfile "$tmp/redis.log" --daemonize no &
pids+=($!)
redis_pid=$!
# shellcheck disable=SC2086
"$tmp/cache" -addr "$OURS_ADDR" $OURS_FLAGS 2>"$tmp/cache.log" &
pids+=($!)
ours_pid=$!

wait_ready() {
	for _ in $(seq 100); do
		redis-cli -h "${1%:*}" -p "${1##*:}" ping 2>/dev/null | grep -q PONG && return 0
		sleep 0.1
	done
	echo "run.sh: $1 did not answer PING" >&2
	exit 1
}
wait_ready "$REDIS_ADDR"
wait_ready "$OURS_ADDR"

echo "== machine: $(nproc) cores shared by redis-benchmark and the server under test; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   $(redis-server --version | cut -d' ' -f1-3)"

# bench ADDR PID P N -> prints "SET_rps GET_rps client_busy server_us"
#   client_busy: redis-benchmark's CPU time (user+system) / wall time. The
#   client is one thread: near 1.00 it, not the server, sets the pace.
#   server_us: the server's CPU time (utime+stime from /proc) per request.
bench() {
	local t0 t1 out tf=$tmp/time.$$
	t0=$(awk '{print $14 + $15}' "/proc/$2/stat")
	out=$( { TIMEFORMAT='%R %U %S'; time redis-benchmark -h "${1%:*}" -p "${1##*:}" -t set,get -r 100000 -d 16 -c 50 -n "$4" -P "$3" --csv 2>/dev/null; } 2>"$tf")
	t1=$(awk '{print $14 + $15}' "/proc/$2/stat")
	echo "$out" | awk -F'","' -v tm="$(cat "$tf")" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$4" '
		/^"SET"/ {set=$2} /^"GET"/ {get=$2}
		END {split(tm, a, " "); printf "%s %s %.2f %.2f\n", set, get, (a[2]+a[3])/a[1], ticks/hz*1e6/(2*n)}'
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -A res
for P in 1 16; do
	N=$N1
	[ "$P" = 16 ] && N=$N16
	for round in $(seq "$ROUNDS"); do
		# Alternate which target goes first, and keep each round's pair
		# seconds apart, so that the ratio of a round compares like with
		# like when other work on the machine (or host) comes and goes.
		order="redis ours"
		[ $((round % 2)) = 0 ] && order="ours redis"
		declare -A this=()
		for target in $order; do
			addr=$REDIS_ADDR pid=$redis_pid
			[ "$target" = ours ] && addr=$OURS_ADDR pid=$ours_pid
			read -r set get busy cpu < <(bench "$addr" "$pid" "$P" "$N")
			echo "   round $round -P $P $target: SET $set GET $get /s; client busy $busy; server ${cpu} µs CPU per request"
			res[$target,$P,set]+="$set "
			res[$target,$P,get]+="$get "
			res[$target,$P,busy]+="$busy "
			res[$target,$P,cpu]+="$cpu "
			this[$target,set]=$set this[$target,get]=$get
		done
		for op in set get; do
			res[ratio,$P,$op]+="$(awk -v o="${this[ours,$op]}" -v r="${this[redis,$op]}" 'BEGIN {printf "%.3f", o / r}') "
		done
	done
done

echo
echo "== median requests/s over $ROUNDS rounds (redis-benchmark -t set,get -r 100000 -d 16 -c 50)"
echo "   ours/redis: the median of the per-round ratios (range over rounds)"
printf "%-6s %-4s %14s %14s %10s %14s\n" "-P" "op" "redis" "ours" "ours/redis" "range"
med() { echo "${res[$1]}" | tr ' ' '\n' | grep . | median; }
for P in 1 16; do
	for op in set get; do
		r=$(med "redis,$P,$op")
		o=$(med "ours,$P,$op")
		range=$(echo "${res[ratio,$P,$op]}" | tr ' ' '\n' | grep . | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.2f-%.2f", lo, hi}')
		printf "%-6s %-4s %14.0f %14.0f %10.2f %14s\n" "$P" "${op^^}" "$r" "$o" "$(med "ratio,$P,$op")" "$range"
	done
done
echo
echo "== median client busy (redis-benchmark CPU / wall; 1.00 = its one thread is saturated) and server CPU per request"
printf "%-6s %12s %12s %14s %14s\n" "-P" "busy redis" "busy ours" "µs/req redis" "µs/req ours"
for P in 1 16; do
	printf "%-6s %12.2f %12.2f %14.2f %14.2f\n" "$P" "$(med "redis,$P,busy")" "$(med "ours,$P,busy")" "$(med "redis,$P,cpu")" "$(med "ours,$P,cpu")"
done
echo "targets: ours/redis >= 1.00 at -P 1, >= 1.30 at -P 16"
