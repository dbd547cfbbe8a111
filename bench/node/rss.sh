#!/usr/bin/env bash
# Idle memory (RSS) of one node, with and without the embedded NATS server.
# Starts each configuration on 127.0.0.1 with free-ish ports, waits until it
# is ready and idle, reads VmRSS from /proc, stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "building node..." >&2
go build -o "$work/node" ./cmd/node

measure() { # label, roles, extra flags...
  local label=$1 roles=$2; shift 2
  local dir="$work/$label"
  "$work/node" run --roles "$roles" --name "$label" --addr 127.0.0.1 --data "$dir" \
    --admin-port 19090 --gossip-port 17946 --store-port 17070 --app-port 18081 \
    --nats-port 14222 --nats-cluster-port 16222 "$@" >/dev/null 2>"$work/$label.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:19090/readyz >/dev/null && break; sleep 0.1; done
  sleep "${IDLE:-5}"   # let start-up garbage be collected and JetStream settle
  local rss
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  printf "%-34s %6.1f MiB\n" "$label ($roles $*)" "$(echo "$rss/1024" | bc -l)"
  kill -TERM $pid; wait $pid 2>/dev/null || true
}

echo "idle RSS after ${IDLE:-5}s, one node:"
measure store-no-nats primary --nats off
measure store-nats primary --nats on
measure app app --nats off
measure app-primary app,primary
