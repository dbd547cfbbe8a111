#!/usr/bin/env bash
# One service call through pkg/app/svc/rpc's Client against the same POST
# with a plain http.Client, to the same rpc.Server: over loopback and with
# an in-process transport. Rounds alternate the benchmarks so that both
# sides of a pair see the same load; the ratio of a pair is client ÷ plain,
# and the script prints the median of the rounds' ratios and their range.
#
#   bash bench/services/run.sh [rounds]     # default 10, about a minute
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-10}
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
go test -c -o "$bin" ./pkg/app/svc/rpc
cd pkg/app/svc/rpc
for _ in $(seq "$rounds"); do
	for b in CallClient CallPlainHTTP InProcessClient InProcessPlainHTTP; do
		"$bin" -test.run XXX -test.bench "^Benchmark$b\$" -test.benchtime 1s -test.benchmem | grep ns/op
	done
done | awk '
	function median(a, n,   i, j, t) {
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
	}
	{ name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name); k = ++n[name]; ns[name, k] = $3; bytes[name] = $5; allocs[name] = $7 }
	END {
		split("Call InProcess", kinds, " ")
		for (x = 1; x <= 2; x++) {
			c = kinds[x] "Client"; p = kinds[x] "PlainHTTP"; m = n[c] < n[p] ? n[c] : n[p]
			lo = 1e9; hi = 0
			for (i = 1; i <= m; i++) { r[i] = ns[c, i] / ns[p, i]; if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i]; a[i] = ns[c, i]; b[i] = ns[p, i] }
			printf "%-10s client %6.1f µs/call  plain %6.1f µs/call  ratio %.2f (%.2f–%.2f, %d rounds)  %s vs %s B/op, %s vs %s allocs/op\n",
				kinds[x], median(a, m) / 1000, median(b, m) / 1000, median(r, m), lo, hi, m, bytes[c], bytes[p], allocs[c], allocs[p]
		}
	}'
