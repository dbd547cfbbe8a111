#!/usr/bin/env bash
# bench/lb/run.sh: our load balancer (pkg/lb), nginx and HAProxy in front of
# the same two backends, in one run.
#
#   1. maximum requests/s with wrk (same threads, connections and duration);
#   2. p50/p99/p99.9 at a fixed rate, 70% of HAProxy's maximum (ratelat, an
#      open-loop Go client, since Debian has no wrk2);
#   3. the latency each proxy adds over calling a backend directly.
#
# Everything runs on this machine on 127.0.0.x: wrk, the proxy and both
# backends share its cores, so a proxy that spends less CPU per request
# leaves more to the others; compare ratios, not absolute figures.
#
# Environment: DURATION (wrk seconds, 10), CONNS (64), THREADS (2),
# ROUNDS (wrk rounds per target, median kept, 3), RATE_SECONDS (10),
# RATE (fixed rate; default 70% of HAProxy's max), KEEP=1 keeps the temp dir.
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
RATE_SECONDS=${RATE_SECONDS:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

B1=127.0.0.21:18101
B2=127.0.0.22:18102
OURS=127.0.0.23:18080
NGINX=127.0.0.24:18080
HAPROXY=127.0.0.25:18080

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (Debian packages)"
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)

DIR=$(mktemp -d /tmp/bench-lb.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then log "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

log "building backend, lbserver and ratelat into $DIR"
(cd "$ROOT" && go build -o "$DIR/backend" ./bench/lb/backend \
  && go build -o "$DIR/lbserver" ./bench/lb/lbserver \
  && go build -o "$DIR/ratelat" ./bench/lb/ratelat)

wait_port() { # host:port
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on $1"; return 1
}

subst() { sed -e "s|@DIR@|$DIR|g" -e "s|@ADDR@|$2|g" -e "s|@B1@|$B1|g" -e "s|@B2@|$B2|g" "$1"; }

log "starting backends on $B1 and $B2"
"$DIR/backend" -addr $B1 -name b1 >"$DIR/b1.log" 2>&1 & PIDS+=($!)
"$DIR/backend" -addr $B2 -name b2 >"$DIR/b2.log" 2>&1 & PIDS+=($!)
log "starting ours (pkg/lb) on $OURS"
"$DIR/lbserver" -addr $OURS -name lb-bench --backends $B1,$B2 >"$DIR/lb.log" 2>&1 & PIDS+=($!)
log "starting nginx on $NGINX"
subst "$HERE/nginx.conf.tmpl" $NGINX >"$DIR/nginx.conf"
"$NGINX_BIN" -c "$DIR/nginx.conf" -p "$DIR" >"$DIR/nginx.out" 2>&1 & PIDS+=($!)
log "starting HAProxy on $HAPROXY"
subst "$HERE/haproxy.cfg.tmpl" $HAPROXY >"$DIR/haproxy.cfg"
"$HAPROXY_BIN" -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.out" 2>&1 & PIDS+=($!)
for a in $B1 $B2 $OURS $NGINX $HAPROXY; do wait_port $a; done
sleep 1 # our lb's first health checks

names=(direct ours nginx haproxy)
declare -A addr=([direct]=$B1 [ours]=$OURS [nginx]=$NGINX [haproxy]=$HAPROXY)
for n in "${names[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://${addr[$n]}/")
  [ "$code" = 200 ] || { log "$n answers $code, not 200"; exit 1; }
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A rps
log "max throughput: wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds per target, interleaved"
declare -A runs
for r in $(seq 1 "$ROUNDS"); do
  for n in "${names[@]}"; do
    v=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "http://${addr[$n]}/" | awk '/Requests\/sec/ {print $2}')
    log "  round $r $n: $v req/s"
    runs[$n]="${runs[$n]:-} $v"
  done
done
for n in "${names[@]}"; do rps[$n]=$(echo ${runs[$n]} | tr ' ' '\n' | median); done

RATE=${RATE:-$(awk -v h="${rps[haproxy]}" 'BEGIN {printf "%d", h*0.7}')}
log "fixed rate: $RATE req/s (70% of HAProxy's ${rps[haproxy]}) for ${RATE_SECONDS}s each"
declare -A p50 p99 p999 achieved errors
for n in "${names[@]}"; do
  line=$("$DIR/ratelat" -url "http://${addr[$n]}/" -rate "$RATE" -duration "${RATE_SECONDS}s" -conns 256 2>>"$DIR/ratelat.log")
  log "  $n: $line"
  for kv in $line; do
    case $kv in
      p50=*) p50[$n]=${kv#*=} ;; p99=*) p99[$n]=${kv#*=} ;; p999=*) p999[$n]=${kv#*=} ;;
      achieved=*) achieved[$n]=${kv#*=} ;; errors=*) errors[$n]=${kv#*=} ;;
    esac
  done
done

echo
echo "## bench/lb $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t$THREADS -c$CONNS -d${DURATION}s (median of $ROUNDS), fixed rate $RATE req/s"
echo
printf "| %-8s | %10s | %9s | %9s | %9s | %10s | %11s | %6s |\n" target "max req/s" "p50 ms" "p99 ms" "p99.9 ms" "added p50" "added p99" errors
printf "|%s|\n" "----------|------------|-----------|-----------|-----------|------------|-------------|--------"
for n in "${names[@]}"; do
  if [ "$n" = direct ]; then a50="-"; a99="-"; else
    a50=$(awk -v x="${p50[$n]}" -v d="${p50[direct]}" 'BEGIN {printf "%+.3f", x-d}')
    a99=$(awk -v x="${p99[$n]}" -v d="${p99[direct]}" 'BEGIN {printf "%+.3f", x-d}')
  fi
  printf "| %-8s | %10.0f | %9s | %9s | %9s | %10s | %11s | %6s |\n" "$n" "${rps[$n]}" "${p50[$n]}" "${p99[$n]}" "${p999[$n]}" "$a50" "$a99" "${errors[$n]}"
done
echo
awk -v o="${rps[ours]}" -v ng="${rps[nginx]}" -v h="${rps[haproxy]}" \
    -v o99="${p99[ours]}" -v ng99="${p99[nginx]}" -v h99="${p99[haproxy]}" 'BEGIN {
  printf "throughput ours/nginx = %.2f, ours/HAProxy = %.2f (target: ours/nginx >= 1)\n", o/ng, o/h
  printf "p99        ours/nginx = %.2f, ours/HAProxy = %.2f (target: ours/HAProxy <= 1)\n", o99/ng99, o99/h99
}'
