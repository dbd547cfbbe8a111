#!/usr/bin/env bash
# Stage 1 baseline: requests/s and latency of the blog's home page and a
# post page, served by one `node run --roles app,primary` process, measured
# with wrk. Every later stage is measured against these figures.
#
#   bench/stage1/run.sh            # 10 s per page, 2 threads, 32 connections
#   DURATION=30s CONNS=64 bench/stage1/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
DURATION=${DURATION:-10s} CONNS=${CONNS:-32} THREADS=${THREADS:-2} POSTS=${POSTS:-200}
ADDR=${ADDR:-127.0.0.61}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

echo "== building node" >&2
go build -o "$work/node" ./cmd/node
echo "== starting stage 1 on $ADDR" >&2
"$work/node" run --roles app,primary --name stage1 --addr "$ADDR" --data "$work/data" --app-bcrypt-cost 4 \
  >/dev/null 2>"$work/node.log" &
for _ in $(seq 100); do curl -sf "http://$ADDR:9090/readyz" >/dev/null && break; sleep 0.1; done
echo "== seeding $POSTS posts" >&2
"$work/node" seed --target "http://$ADDR:8081" --posts "$POSTS" >/dev/null
post=$(curl -s "http://$ADDR:8081/api/v1/posts?page=1" | sed -n 's/.*"id":"\([0-9a-z]*\)".*/\1/p' | head -1)
[ -n "$post" ] || { echo "no post found after seeding" >&2; exit 1; }

run() { # label url
  echo "== wrk $1: $2" >&2
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$2")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p90=$(echo "$out" | awk '$1=="90%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  printf "| %-10s | %8s | %8s | %8s | %8s | %s |\n" "$1" "$rps" "$p50" "$p90" "$p99" "${errs:-0}"
}
echo
echo "stage 1, wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) cores shared by wrk and the node"
echo "| page       |   req/s  |   p50    |   p90    |   p99    | non-2xx |"
echo "|------------|---------:|---------:|---------:|---------:|--------:|"
run home "http://$ADDR:8081/"
run post "http://$ADDR:8081/p/$post"
