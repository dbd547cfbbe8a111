#!/bin/sh
# Jobs/s end to end (publish, consume, handle, ack) through pkg/worker's
# Publisher and Worker, against raw nats.go publish/consume/ack of the same
# messages on the same kind of stream (work queue, file storage, SyncAlways,
# Msg-Id), and the ratio. Usage: bench/queue/run.sh [N jobs] [pairs]
#
# Both sides wait on fsync (SyncAlways), so the figures swing with whatever
# else the machine does. The two are therefore run alternately, raw then
# ours, one pair after another, and each pair gives a ratio; the median of
# the pairs' ratios is the figure, with the spread printed beside it.
set -e
cd "$(dirname "$0")/../.."
N=${1:-3000}
PAIRS=${2:-5}
BIN=$(mktemp -d)/worker.test
trap 'rm -rf "$(dirname "$BIN")"' EXIT
go test -c -o "$BIN" ./pkg/worker
cd pkg/worker
echo "running $PAIRS pairs (raw, ours) of $N jobs each ..." >&2
i=1
while [ "$i" -le "$PAIRS" ]; do
	raw=$("$BIN" -test.run '^$' -test.bench 'JobsRawNATS$' -test.benchtime "${N}x" | awk '/^BenchmarkJobsRawNATS/ {print $5}')
	ours=$("$BIN" -test.run '^$' -test.bench 'JobsEndToEnd$' -test.benchtime "${N}x" | awk '/^BenchmarkJobsEndToEnd/ {print $5}')
	echo "pair $i: raw $raw jobs/s, ours $ours jobs/s" >&2
	echo "$raw $ours"
	i=$((i + 1))
done | awk '{ raw[NR] = $1; ours[NR] = $2; r[NR] = $2 / $1; sr += $1; so += $2 }
END {
	n = NR
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
	med = (n % 2) ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
	printf "ours mean %.0f jobs/s, raw mean %.0f jobs/s; ratio per pair: median %.2f, min %.2f, max %.2f (target >= 0.8)\n", so / n, sr / n, med, r[1], r[n]
}'
