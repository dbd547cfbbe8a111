#!/usr/bin/env bash
# Stage-to-stage measurements: the same `node load` against the stages the
# issues compare, one stack at a time.
#
# For each case: start the stage with `node up --stage N --dir <tmp>
# --base-addr 127.0.5x.2` (a range of its own, away from a stack on
# 127.0.0.2..), wait for "is ready", seed it (`node seed --posts 100`), run
# `node load` with the case's --mix and the same --rate, --duration, --users
# and --seed, keep its --json summary, then Ctrl-C node up (SIGINT) and wait
# for every node to stop. Prints one table at the end.
#
# Cases (group: what the issue asks):
#   base   stages 1, 2, 3, 4, 5 with the read mix (MIX_READ): the baseline
#          rows, and issue 7 (stage 5's cache against stage 4)
#   anon   stage 5 and stage 6 with anonymous readers only (MIX_ANON); the
#          edge of stage 6 runs with --edge-origin-latency 50ms (issue 8)
#   image  stages 7 and 8 writing posts with an image (MIX_IMAGE) at
#          RATE_IMAGE (issue 9: inline thumbnails against workers)
#   micro  stages 9 and 10 with every part of the blog (MIX_FULL, loadgen's
#          ServicesMix: pages, reads, comments, posts, search, profiles,
#          tips): the gateway and its five services against the monolith
#          under the same load (issue 18)
#
#   bash bench/stages/run.sh                 # every case, about 11 minutes
#   DURATION=10s bash bench/stages/run.sh    # shorter runs
#   CASES="5a 6a" bash bench/stages/run.sh   # only some cases (see below)
#   CASES="9f 10f" bash bench/stages/run.sh  # stage 9 against stage 10
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${RATE:-40}
RATE_IMAGE=${RATE_IMAGE:-8}
DURATION=${DURATION:-20s}
USERS=${USERS:-10}
SEED=${SEED:-1}
POSTS=${POSTS:-100}
LATENCY=${LATENCY:-50ms}
MIX_READ=${MIX_READ:-browse=60,page=30,read=10}
MIX_ANON=${MIX_ANON:-anon=1}
MIX_IMAGE=${MIX_IMAGE:-post-image=1}
MIX_FULL=${MIX_FULL:-browse=50,page=15,read=10,comment=5,post=5,search=8,profile=5,tip=2}
# case id, stage, mix, op whose latency is the point, extra node up flags
ALL_CASES=(
  "1|1|$MIX_READ|page|"
  "2|2|$MIX_READ|page|"
  "3|3|$MIX_READ|page|"
  "4|4|$MIX_READ|page|"
  "5|5|$MIX_READ|page|"
  "5a|5|$MIX_ANON|anon|"
  "6a|6|$MIX_ANON|anon|--flags=edge=--edge-origin-latency=$LATENCY"
  "7i|7|$MIX_IMAGE|post-image|"
  "8i|8|$MIX_IMAGE|post-image|"
  "9f|9|$MIX_FULL|post|"
  "10f|10|$MIX_FULL|post|"
)
CASES=${CASES:-}

work=$(mktemp -d)
up=
cleanup() {
  if [ -n "$up" ] && kill -0 "$up" 2>/dev/null; then kill -INT "$up"; wait "$up" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
echo "building node"
go build -o "$work/node" ./cmd/node
node="$work/node"
results="$work/results"
: >"$results"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

i=0
for c in "${ALL_CASES[@]}"; do
  IFS='|' read -r id stage mix op flags <<<"$c"
  i=$((i + 1))
  if [ -n "$CASES" ] && ! [[ " $CASES " == *" $id "* ]]; then continue; fi
  rate=$RATE
  [ "$op" = post-image ] && rate=$RATE_IMAGE
  dir="$work/stack-$id"
  base="127.0.$((50 + i)).2"
  echo
  echo "== case $id: stage $stage $flags, mix $mix, $rate/s for $DURATION (load average $(cut -d' ' -f1 /proc/loadavg))"
  # shellcheck disable=SC2086 # flags is one word or none
  "$node" up --stage "$stage" --dir "$dir" --base-addr "$base" $flags >"$work/up-$id.log" 2>&1 &
  up=$!
  for _ in $(seq 1 3000); do
    grep -q " is ready in " "$work/up-$id.log" && break
    if ! kill -0 "$up" 2>/dev/null; then cat "$work/up-$id.log"; exit 1; fi
    sleep 0.1
  done
  if ! grep -q " is ready in " "$work/up-$id.log"; then cat "$work/up-$id.log"; exit 1; fi
  grep " is ready in " "$work/up-$id.log"
  "$node" seed --dir "$dir" --posts "$POSTS" | tail -1
  "$node" load --dir "$dir" --rate "$rate" --duration "$DURATION" --users "$USERS" --mix "$mix" \
    --seed "$SEED" --json "$work/load-$id.json" >"$work/load-$id.out" 2>&1 || { cat "$work/load-$id.out"; exit 1; }
  sed -n '/ok\/s$/p; /^  latency/p' "$work/load-$id.out"
  load=$(cut -d' ' -f1 /proc/loadavg)
  kill -INT "$up"
  wait "$up" || true
  up=
  # ratio of HIT among the answers that carried the header; "-" if none did
  jq -r --arg id "$id" --arg stage "$stage" --arg op "$op" --arg load "$load" '
    def ratio(m): (m | add // 0) as $n | if $n == 0 then "-" else (((m.HIT // 0) / $n * 100 | floor | tostring) + "%") end;
    [$id, $stage, .mix, (.rate | tostring), (.throughput * 10 | round / 10 | tostring),
     (.latency.p50_ms * 100 | round / 100 | tostring), (.latency.p99_ms * 100 | round / 100 | tostring),
     $op, (.ops[$op].latency.p50_ms * 100 | round / 100 | tostring), (.ops[$op].latency.p99_ms * 100 | round / 100 | tostring),
     ((.errors | tostring) + "/" + (.sent | tostring)),
     ratio(.app_cache), ratio(.edge), $load] | join("|")' "$work/load-$id.json" >>"$results"
done

echo
echo "rate ${RATE}/s (post-image ${RATE_IMAGE}/s), $DURATION, $USERS users, seed $SEED, $POSTS posts seeded; latency in ms from each request's due time"
{
  echo "case|stage|mix|rate|ok/s|p50|p99|op|op p50|op p99|errors|app hit|edge hit|load"
  cat "$results"
} | column -t -s'|'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
