#!/usr/bin/env bash
# Runs the store write benchmarks COUNT times (default 5), one full pass
# after another so that drifting disk load hits ours and raw alike, and
# prints the median ns/op of each and the throughput ratios ours/raw
# (raw ns/op divided by ours: above 1 means scalestack is faster).
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
/^Benchmark/ {
  name=$1; sub(/-[0-9]+$/, "", name)
  for (i = 3; i < NF; i++) if ($(i+1) == "ns/op") { n[name]++; v[name, n[name]] = $i }
}
function median(name,   k, i, j, t, a) {
  k = n[name]; for (i = 1; i <= k; i++) a[i] = v[name, i]
  for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
function ratio(ours, raw) {
  if (!(ours in n) || !(raw in n)) return
  printf "%-44s %10.0f ns/op  vs %-32s %10.0f ns/op  ratio ours/raw %.2f\n", ours, median(ours), raw, median(raw), median(raw) / median(ours)
}
END {
  print ""
  print "median of " n["BenchmarkSingleWrite/scalestack"] " runs; ratio = throughput of scalestack / throughput of raw bbolt"
  ratio("BenchmarkSingleWrite/scalestack", "BenchmarkSingleWrite/bbolt-update")
  ratio("BenchmarkConcurrentWrite/scalestack", "BenchmarkConcurrentWrite/bbolt-batch")
  ratio("BenchmarkConcurrentWrite/scalestack", "BenchmarkConcurrentWrite/bbolt-batch-1ms")
  ratio("BenchmarkConcurrentWrite/scalestack", "BenchmarkConcurrentWrite/bbolt-update")
  ratio("BenchmarkConcurrentWrite/scalestack-delay-1ms", "BenchmarkConcurrentWrite/bbolt-batch-1ms")
  if ("BenchmarkHTTPWrite" in n) printf "%-44s %10.0f ns/op  (Client over HTTP, 64 writers)\n", "BenchmarkHTTPWrite", median("BenchmarkHTTPWrite")
}' "$out"
