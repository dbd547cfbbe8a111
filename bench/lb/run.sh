#!/usr/bin/env bash
# bench/lb/run.sh: our load balancer (pkg/lb), nginx and HAProxy in front of
# the same two backends, in one run.
#
#   1. maximum requests/s with wrk (same threads, connections and duration);
#   2. p50/p99/p99.9 at a fixed rate, 70% of HAProxy's maximum, and at a
#      light 25% (ratelat, an open-loop Go client, since Debian has no wrk2);
#   3. the latency each proxy adds over calling a backend directly.
#
# Everything runs on this machine on 127.0.0.x: wrk, the proxy and both
# backends share its cores, so a proxy that spends less CPU per request
# leaves more to the others; compare ratios, not absolute figures.
#
# Environment: DURATION (wrk seconds per run, 5), CONNS (64), THREADS (2),
# ROUNDS (wrk rounds, 5), RATE_SECONDS (3), LAT_ROUNDS (fixed-rate rounds, 5),
# RATE (fixed rate; default 70% of HAProxy's median max), LIGHT_RATE (25%),
# KEEP=1 keeps the temp dir. Each figure is a median over rounds, and each ratio the median of
# per-round ratios, because other work on a shared machine comes in bursts.
set -euo pipefail

DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-5}
RATE_SECONDS=${RATE_SECONDS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

B1=127.0.0.21:18101
B2=127.0.0.22:18102
OURS=127.0.0.23:18080
NGINX=127.0.0.24:18080
HAPROXY=127.0.0.25:18080
OURS1=127.0.0.26:18080

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
"$DIR/lbserver" -addr $OURS -name lb-bench --lb-backends $B1,$B2 >"$DIR/lb.log" 2>&1 & PIDS+=($!)
# The same with a goroutine per connection instead of event loops
# (--lb-event-loops 0), the transport before them (informational).
"$DIR/lbserver" -addr $OURS1 -name lb-bench-gor --lb-event-loops 0 --lb-backends $B1,$B2 >"$DIR/lb1.log" 2>&1 & PIDS+=($!)
log "starting nginx on $NGINX"
subst "$HERE/nginx.conf.tmpl" $NGINX >"$DIR/nginx.conf"
"$NGINX_BIN" -c "$DIR/nginx.conf" -p "$DIR" >"$DIR/nginx.out" 2>&1 & PIDS+=($!)
log "starting HAProxy on $HAPROXY"
subst "$HERE/haproxy.cfg.tmpl" $HAPROXY >"$DIR/haproxy.cfg"
"$HAPROXY_BIN" -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.out" 2>&1 & PIDS+=($!)
for a in $B1 $B2 $OURS $OURS1 $NGINX $HAPROXY; do wait_port $a; done
sleep 1 # our lb's first health checks

names=(direct ours ours-gor nginx haproxy)
declare -A addr=([direct]=$B1 [ours]=$OURS [ours-gor]=$OURS1 [nginx]=$NGINX [haproxy]=$HAPROXY)
N=${#names[@]}
for n in "${names[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://${addr[$n]}/")
  [ "$code" = 200 ] || { log "$n answers $code, not 200"; exit 1; }
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.2f–%.2f", lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews every figure)"

# Maximum throughput. Rounds rotate the order of the targets, and each
# round's ratios compare runs seconds apart, so that a burst of other work
# on the machine moves one round's ratio rather than the result.
declare -A rps_runs
ratio_ng=() ratio_ha=() ratio1_ng=() ratio1_ha=()
log "max throughput: wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
  order=("${names[@]:$(( (r-1) % N ))}" "${names[@]:0:$(( (r-1) % N ))}")
  declare -A this=()
  for n in "${order[@]}"; do
    v=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "http://${addr[$n]}/" | awk '/Requests\/sec/ {print $2}')
    this[$n]=$v
    rps_runs[$n]="${rps_runs[$n]:-} $v"
  done
  ratio_ng+=("$(ratio "${this[ours]}" "${this[nginx]}")")
  ratio_ha+=("$(ratio "${this[ours]}" "${this[haproxy]}")")
  ratio1_ng+=("$(ratio "${this[ours-gor]}" "${this[nginx]}")")
  ratio1_ha+=("$(ratio "${this[ours-gor]}" "${this[haproxy]}")")
  log "  round $r: direct ${this[direct]}, ours ${this[ours]}, ours-gor ${this[ours-gor]}, nginx ${this[nginx]}, haproxy ${this[haproxy]} req/s; ours/nginx ${ratio_ng[-1]}, ours/haproxy ${ratio_ha[-1]}"
done
declare -A rps
for n in "${names[@]}"; do rps[$n]=$(echo ${rps_runs[$n]} | tr ' ' '\n' | median); done

# Latency at a fixed rate: the brief's 70% of HAProxy's maximum, and a light
# rate (25%) at which no target should queue, so that the latency a proxy
# adds shows apart from the machine's overload.
LAT_ROUNDS=${LAT_ROUNDS:-5}
REPORT=""
lat_pass() { # rate label
  local rate=$1 label=$2 r n line kv
  local -A p50s=() p99s=() p999s=() errs=() t99=() p50=() p99=() p999=()
  local p99_ha=() p99_ng=() p99_1ha=()
  log "fixed rate ($label): $rate req/s, ${RATE_SECONDS}s per run (+1s warm-up), $LAT_ROUNDS rounds"
  for r in $(seq 1 "$LAT_ROUNDS"); do
    local order=("${names[@]:$(( (r-1) % N ))}" "${names[@]:0:$(( (r-1) % N ))}")
    for n in "${order[@]}"; do
      line=$("$DIR/ratelat" -url "http://${addr[$n]}/" -rate "$rate" -duration "${RATE_SECONDS}s" -warmup 1s -conns 256 2>>"$DIR/ratelat.log")
      log "  round $r $n: $line"
      for kv in $line; do
        case $kv in
          p50=*) p50s[$n]="${p50s[$n]:-} ${kv#*=}" ;;
          p99=*) p99s[$n]="${p99s[$n]:-} ${kv#*=}"; t99[$n]=${kv#*=} ;;
          p999=*) p999s[$n]="${p999s[$n]:-} ${kv#*=}" ;;
          errors=*) errs[$n]=$(( ${errs[$n]:-0} + ${kv#*=} )) ;;
        esac
      done
    done
    p99_ha+=("$(ratio "${t99[ours]}" "${t99[haproxy]}")")
    p99_ng+=("$(ratio "${t99[ours]}" "${t99[nginx]}")")
    p99_1ha+=("$(ratio "${t99[ours-gor]}" "${t99[haproxy]}")")
  done
  for n in "${names[@]}"; do
    p50[$n]=$(echo ${p50s[$n]} | tr ' ' '\n' | median)
    p99[$n]=$(echo ${p99s[$n]} | tr ' ' '\n' | median)
    p999[$n]=$(echo ${p999s[$n]} | tr ' ' '\n' | median)
  done
  REPORT+=$'\n'"### $label: $rate req/s, ${RATE_SECONDS}s runs, median of $LAT_ROUNDS rounds (ms)"$'\n\n'
  REPORT+=$(printf "| %-8s | %8s | %8s | %8s | %9s | %9s | %6s |" target p50 p99 p99.9 "added p50" "added p99" errors)$'\n'
  REPORT+="|----------|---------:|---------:|---------:|----------:|----------:|-------:|"$'\n'
  for n in "${names[@]}"; do
    local a50="-" a99="-"
    if [ "$n" != direct ]; then
      a50=$(awk -v x="${p50[$n]}" -v d="${p50[direct]}" 'BEGIN {printf "%+.3f", x-d}')
      a99=$(awk -v x="${p99[$n]}" -v d="${p99[direct]}" 'BEGIN {printf "%+.3f", x-d}')
    fi
    REPORT+=$(printf "| %-8s | %8.3f | %8.3f | %8.3f | %9s | %9s | %6s |" "$n" "${p50[$n]}" "${p99[$n]}" "${p999[$n]}" "$a50" "$a99" "${errs[$n]:-0}")$'\n'
  done
  REPORT+=$'\n'"p99 ours/HAProxy = $(printf '%s\n' "${p99_ha[@]}" | median) (rounds $(printf '%s\n' "${p99_ha[@]}" | minmax)), target <= 1; ours/nginx = $(printf '%s\n' "${p99_ng[@]}" | median) (rounds $(printf '%s\n' "${p99_ng[@]}" | minmax)); ours-gor/HAProxy = $(printf '%s\n' "${p99_1ha[@]}" | median)"$'\n'
}
RATE=${RATE:-$(awk -v h="${rps[haproxy]}" 'BEGIN {printf "%d", h*0.7}')}
LIGHT_RATE=${LIGHT_RATE:-$(awk -v h="${rps[haproxy]}" 'BEGIN {printf "%d", h*0.25}')}
lat_pass "$RATE" "70% of HAProxy's maximum"
lat_pass "$LIGHT_RATE" "25% of HAProxy's maximum"
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "## bench/lb $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "### maximum throughput: wrk -t$THREADS -c$CONNS -d${DURATION}s, median of $ROUNDS rounds"
echo
printf "| %-8s | %10s |\n" target "req/s"
printf "|%s|\n" "----------|-----------:"
for n in "${names[@]}"; do printf "| %-8s | %10.0f |\n" "$n" "${rps[$n]}"; done
echo
echo "throughput ours/nginx   = $(printf '%s\n' "${ratio_ng[@]}" | median) (rounds $(printf '%s\n' "${ratio_ng[@]}" | minmax)), target >= 1"
echo "throughput ours/HAProxy = $(printf '%s\n' "${ratio_ha[@]}" | median) (rounds $(printf '%s\n' "${ratio_ha[@]}" | minmax))"
echo "goroutine per connection: ours-gor/nginx = $(printf '%s\n' "${ratio1_ng[@]}" | median) (rounds $(printf '%s\n' "${ratio1_ng[@]}" | minmax)), ours-gor/HAProxy = $(printf '%s\n' "${ratio1_ha[@]}" | median)"
echo "$REPORT"
