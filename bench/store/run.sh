#!/usr/bin/env bash
# Runs the store write benchmarks COUNT times (default 5), one full pass
# after another so that drifting disk load hits ours and raw alike, and
# prints the median ns/op of each and the throughput ratios ours/raw
# (raw ns/op divided by ours, per pass, median over passes: above 1 means
# scalestack is faster).
# Usage: bench/store/run.sh [COUNT] [BENCHTIME]
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-5}
benchtime=${2:-1s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$count"); do
  echo "pass $i/$count: go test -bench . -benchtime $benchtime ./bench/store/" >&2
  go test -run '^$' -bench . -count 1 -benchtime "$benchtime" ./bench/store/ | tee -a "$out" >&2
done
awk '
function sort(a, k,   i, j, t) {
  for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
}
function median(a, k) { sort(a, k); return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  if (name == "BenchmarkSingleWrite/scalestack") pass++
  for (i = 3; i < NF; i++) if ($(i + 1) == "ns/op") v[name, pass] = $i
  seen[name] = 1
}
function nsop(name,   a, k, p) {
  k = 0; for (p = 1; p <= pass; p++) if ((name, p) in v) a[++k] = v[name, p]
  return median(a, k)
}
# ratio prints the medians and the median of the per-pass ratios raw/ours
# (throughput ours / throughput raw): pairing runs of the same pass cancels
# most of the drift of a shared disk.
function ratio(ours, raw,   r, k, p, lo, hi) {
  if (!(ours in seen) || !(raw in seen)) return
  k = 0
  for (p = 1; p <= pass; p++) if ((ours, p) in v && (raw, p) in v) r[++k] = v[raw, p] / v[ours, p]
  sort(r, k); lo = r[1]; hi = r[k]
  printf "%-42s %9.0f ns/op  vs  %-38s %9.0f ns/op   ours/raw %.2f  (passes %.2f..%.2f)\n", ours, nsop(ours), raw, nsop(raw), median(r, k), lo, hi
}
END {
  print ""
  print "median of " pass " passes; ours/raw = throughput of scalestack / throughput of raw bbolt, median of per-pass ratios"
  ratio("BenchmarkSingleWrite/scalestack", "BenchmarkSingleWrite/bbolt-update")
  ratio("BenchmarkConcurrentWrite/scalestack", "BenchmarkConcurrentWrite/bbolt-batch")
  ratio("BenchmarkConcurrentWrite/scalestack", "BenchmarkConcurrentWrite/bbolt-batch-1ms")
  ratio("BenchmarkConcurrentWrite/scalestack", "BenchmarkConcurrentWrite/bbolt-update")
  ratio("BenchmarkConcurrentWrite/scalestack-delay-1ms", "BenchmarkConcurrentWrite/bbolt-batch-1ms")
  if ("BenchmarkHTTPWrite" in seen) printf "%-42s %9.0f ns/op  (Client over HTTP/JSON, 64 writers)\n", "BenchmarkHTTPWrite", nsop("BenchmarkHTTPWrite")
}' "$out"
