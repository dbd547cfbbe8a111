#!/usr/bin/env bash
# Time-to-ready and idle memory of `node up` stages.
#
# For each stage (default: 1 2), ROUNDS times (default 5): start the stage
# fresh with `node up` on 127.0.30.2.. (away from a stack on 127.0.0.2..),
# read "stage N ... is ready in X s" from its output (from node up's start
# to every node's /readyz answering 200), wait IDLE seconds (default 10),
# read each node's RSS from `node ps` (VmRSS), then Ctrl-C it and check that
# no process is left. Prints one line per round and the medians.
#
#   bash bench/launch/run.sh          # stages 1 and 2
#   ROUNDS=3 bash bench/launch/run.sh 1 2 4
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
IDLE=${IDLE:-10}
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(1 2)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building node"
go build -o "$work/node" ./cmd/node
node="$work/node"

# median (min - max) of numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {m = NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.1f (%.1f - %.1f)\n", m, a[1], a[NR]}'; }

for stage in "${STAGES[@]}"; do
  : >"$work/ready-$stage"
  : >"$work/rss-$stage"
  for round in $(seq 1 "$ROUNDS"); do
    dir="$work/stack-$stage"
    "$node" up --stage "$stage" --dir "$dir" --fresh --base-addr 127.0.30.2 >"$work/out" 2>&1 &
    up=$!
    ready=
    for _ in $(seq 1 600); do
      ready=$(sed -n 's/.* is ready in \([0-9.]*\)s.*/\1/p' "$work/out")
      [ -n "$ready" ] && break
      if ! kill -0 "$up" 2>/dev/null; then cat "$work/out"; exit 1; fi
      sleep 0.1
    done
    echo "$ready" >>"$work/ready-$stage"
    sleep "$IDLE"
    # NAME STATE PID ROLES ADDRESS UPTIME RSS MiB ...
    rss=$("$node" ps --dir "$dir" | awk '$2=="running" {printf "%s=%s ", $1, $7; print $1, $7 >> "'"$work/rss-$stage"'"}')
    echo "stage $stage round $round: ready in ${ready}s; idle RSS (MiB): $rss"
    kill -INT "$up"
    wait "$up" || true
    if pgrep -f -- "$dir" >/dev/null; then echo "processes left behind:"; pgrep -af -- "$dir"; exit 1; fi
  done
done

echo
echo "median (min - max) over $ROUNDS rounds, ${IDLE}s idle:"
for stage in "${STAGES[@]}"; do
  printf "stage %s: ready in %ss;" "$stage" "$(median <"$work/ready-$stage")"
  for n in $(awk '{print $1}' "$work/rss-$stage" | sort -u); do
    printf " %s %s MiB" "$n" "$(awk -v n="$n" '$1==n {print $2}' "$work/rss-$stage" | median)"
  done
  echo
done
