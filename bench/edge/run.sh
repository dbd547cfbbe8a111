#!/usr/bin/env bash
# bench/edge/run.sh: our edge (pkg/cdn), Varnish and nginx proxy_cache in
# front of the same origin, in one run, measured with wrk:
#
#   hit-1k    GET /1k   (1 KB, stored: every request is a hit)
#   hit-100k  GET /100k (100 KB, stored)
#   mix-90-10 nine in ten GET /1k, one in ten /1k?miss=<unique> (a miss that
#             the proxy fetches from the origin and stores), see mix.lua
#
# Then the distance an edge saves: a second edge of ours with
# --edge-origin-latency 50ms, one client, latency of a MISS (every request goes
# the 50 ms to the origin, as a reader without an edge would at stage 5)
# against a HIT (answered by the edge near the reader, stage 6).
#
# Rounds are interleaved (ours, Varnish, nginx, ours, ...) and the median of
# ROUNDS is kept, so that other load on the machine falls on all three alike.
# Everything runs on this machine on 127.0.0.6x: wrk, the proxy and the
# origin share its cores, so a proxy that spends less CPU per request leaves
# more to wrk; compare ratios, not absolute figures. Beside requests/s the
# table shows the CPU time each proxy used per request (user+system, its
# processes and their children, from /proc), which other load on the
# machine disturbs much less than requests/s. PIN=1 pins wrk to core
# 0 and the proxies and origin to core 1 (nginx then runs one worker).
#
# Environment: DURATION (wrk seconds, 10), CONNS (64), THREADS (2),
# ROUNDS (3), PIN (0), KEEP=1 keeps the temp dir.
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
PIN=${PIN:-0}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

ORIGIN=127.0.0.61:18001
OURS=127.0.0.62:18000
FAR=127.0.0.65:18000
VARNISH=127.0.0.63:18000
NGINX=127.0.0.64:18000

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v varnishd >/dev/null || [ -x /usr/sbin/varnishd ] || need+=(varnish)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (Debian packages)"
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
VARNISHD=$(command -v varnishd || echo /usr/sbin/varnishd)
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)

if [ "$PIN" = 1 ]; then
  SERVER="taskset -c 1"; CLIENT="taskset -c 0"; NGINX_WORKERS=1
else
  SERVER=""; CLIENT=""; NGINX_WORKERS=auto
fi

DIR=$(mktemp -d /tmp/bench-edge.XXXXXX)
# nginx workers drop to an unprivileged user when started as root.
chmod 755 "$DIR"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then log "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

log "building origin and edgeserver into $DIR"
(cd "$ROOT" && go build -o "$DIR/origin" ./bench/edge/origin \
  && go build -o "$DIR/edgeserver" ./bench/edge/edgeserver)

wait_port() { # host:port
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on $1"; return 1
}

log "starting the origin on $ORIGIN"
$SERVER "$DIR/origin" -addr $ORIGIN >"$DIR/origin.log" 2>&1 & PIDS+=($!)
declare -A PID
log "starting ours (pkg/cdn) on $OURS"
$SERVER "$DIR/edgeserver" -addr $OURS --edge-origin "http://$ORIGIN" --edge-max-bytes $((512<<20)) \
  >"$DIR/edge.log" 2>&1 & PIDS+=($!); PID[ours]=$!
$SERVER "$DIR/edgeserver" -addr $FAR -name edge-far --edge-origin "http://$ORIGIN" --edge-origin-latency 50ms \
  >"$DIR/edge-far.log" 2>&1 & PIDS+=($!)
log "starting Varnish on $VARNISH (as $(id -un), -j none, -s malloc,512m)"
sed -e "s|@ORIGIN_HOST@|${ORIGIN%:*}|" -e "s|@ORIGIN_PORT@|${ORIGIN#*:}|" "$HERE/varnish.vcl.tmpl" >"$DIR/varnish.vcl"
$SERVER "$VARNISHD" -F -j none -n "$DIR/varnish" -a $VARNISH -f "$DIR/varnish.vcl" -s malloc,512m -T none \
  >"$DIR/varnish.log" 2>&1 & PIDS+=($!); PID[varnish]=$!
log "starting nginx on $NGINX ($NGINX_WORKERS workers)"
sed -e "s|@DIR@|$DIR|g" -e "s|@ADDR@|$NGINX|g" -e "s|@ORIGIN@|$ORIGIN|g" \
  -e "s|worker_processes 1;|worker_processes $NGINX_WORKERS;|" "$HERE/nginx.conf.tmpl" >"$DIR/nginx.conf"
$SERVER "$NGINX_BIN" -c "$DIR/nginx.conf" -p "$DIR" >"$DIR/nginx.out" 2>&1 & PIDS+=($!); PID[nginx]=$!
for a in $ORIGIN $OURS $FAR $VARNISH $NGINX; do wait_port $a; done

NAMES=(ours varnish nginx)
declare -A ADDR=([ours]=$OURS [varnish]=$VARNISH [nginx]=$NGINX)

# Warm every proxy and check that the second request of each object is a hit.
for n in "${NAMES[@]}"; do
  for p in /1k /100k; do
    curl -fsS -o /dev/null "http://${ADDR[$n]}$p"
    hdrs=$(curl -fsS -o /dev/null -D - "http://${ADDR[$n]}$p" | tr -d '\r')
    if ! grep -qiE '^(x-cache: (HIT)|age: [1-9]|x-varnish: [0-9]+ [0-9]+)' <<<"$hdrs"; then
      log "$n: second GET $p is not a hit:"; echo "$hdrs" >&2; exit 1
    fi
  done
done
log "all three serve /1k and /100k from cache"

# cpu_ticks pid -> user+system clock ticks of pid and its children
cpu_ticks() {
  local t=0 p
  for p in $(ps -e -o pid=,ppid= | awk -v r="$1" '$1==r || $2==r {print $1}'); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}
HZ=$(getconf CLK_TCK)

# run_wrk name test round -> prints "requests/s cpu-µs-per-request"
run_wrk() {
  local n=$1 test=$2 round=$3 url="http://${ADDR[$1]}" out c0 c1
  c0=$(cpu_ticks "${PID[$n]}")
  case $test in
    hit-1k) out=$($CLIENT wrk -t$THREADS -c$CONNS -d${DURATION}s "$url/1k") ;;
    hit-100k) out=$($CLIENT wrk -t$THREADS -c$CONNS -d${DURATION}s "$url/100k") ;;
    mix-90-10) out=$($CLIENT wrk -t$THREADS -c$CONNS -d${DURATION}s -s "$HERE/mix.lua" "$url" -- "$n$round$RANDOM") ;;
  esac
  c1=$(cpu_ticks "${PID[$n]}")
  echo "$out" >>"$DIR/wrk-$n-$test.txt"
  if grep -q "Non-2xx" <<<"$out"; then log "$n $test: non-2xx responses"; grep "Non-2xx" <<<"$out" >&2; fi
  awk -v t=$((c1 - c0)) -v hz="$HZ" '/^  *[0-9]+ requests in/ {n=$1} /Requests\/sec/ {r=$2}
    END {printf "%s %.1f\n", r, (n>0) ? t*1e6/hz/n : 0}' <<<"$out"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

TESTS=(hit-1k hit-100k mix-90-10)
declare -A RES CPU
for test in "${TESTS[@]}"; do
  declare -A runs=() cpus=()
  for round in $(seq 1 "$ROUNDS"); do
    for n in "${NAMES[@]}"; do
      read -r r c < <(run_wrk "$n" "$test" "$round")
      runs[$n]="${runs[$n]:-} $r"
      cpus[$n]="${cpus[$n]:-} $c"
      log "$test round $round: $n $r req/s, $c µs CPU/request"
    done
  done
  for n in "${NAMES[@]}"; do
    # shellcheck disable=SC2086
    RES[$n,$test]=$(median ${runs[$n]})
    # shellcheck disable=SC2086
    CPU[$n,$test]=$(median ${cpus[$n]})
  done
  unset runs cpus
done


echo
echo "edge benchmark: wrk -t$THREADS -c$CONNS -d${DURATION}s, median of $ROUNDS interleaved rounds, $(nproc) cores shared by wrk, origin and proxy (PIN=$PIN)"
echo "$(go version | awk '{print $3}'), $("$VARNISHD" -V 2>&1 | head -1 | grep -o "varnish-[0-9.]*"), $("$NGINX_BIN" -v 2>&1 | awk -F/ '{print "nginx/"$2}')"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {print (b>0)?a/b:0}'; }
echo "requests/s (higher is better)"
printf '%-10s %10s %10s %10s %10s %10s\n' test ours varnish nginx ours/varn ours/ngx
for test in "${TESTS[@]}"; do
  o=${RES[ours,$test]} v=${RES[varnish,$test]} g=${RES[nginx,$test]}
  printf '%-10s %10.0f %10.0f %10.0f %10.2f %10.2f\n' "$test" "$o" "$v" "$g" "$(ratio "$o" "$v")" "$(ratio "$o" "$g")"
done
echo "proxy CPU µs per request (lower is better; ratio varnish/ours and nginx/ours, above 1 means ours is cheaper)"
printf '%-10s %10s %10s %10s %10s %10s\n' test ours varnish nginx varn/ours ngx/ours
for test in "${TESTS[@]}"; do
  o=${CPU[ours,$test]} v=${CPU[varnish,$test]} g=${CPU[nginx,$test]}
  printf '%-10s %10.1f %10.1f %10.1f %10.2f %10.2f\n' "$test" "$o" "$v" "$g" "$(ratio "$v" "$o")" "$(ratio "$g" "$o")"
done

# The distance: p50 and p99 of one client, MISS (through --edge-origin-latency
# 50ms) and HIT, from wrk --latency.
curl -fsS -o /dev/null "http://$FAR/1k"
lat() { awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {r=$2} END {printf "p50 %s, p99 %s, %s req/s", p50, p99, r}'; }
miss=$($CLIENT wrk -t1 -c1 -d5s --latency -s "$HERE/mix.lua" "http://$FAR" -- "far$RANDOM" 1 | lat)
hit=$($CLIENT wrk -t1 -c1 -d5s --latency "http://$FAR/1k" | lat)
echo "distance (edge with --edge-origin-latency 50ms, 1 connection, GET 1 KB):"
echo "  MISS (to the origin, as without an edge): $miss"
echo "  HIT  (answered by the edge):              $hit"
