#!/bin/sh
# Jobs/s end to end (publish, consume, handle, ack) through pkg/worker's
# Publisher and Worker, against raw nats.go publish/consume/ack of the same
# messages on the same kind of stream (work queue, file storage, SyncAlways,
# Msg-Id), and the ratio. Usage: bench/queue/run.sh [N jobs] [count]
set -e
cd "$(dirname "$0")/../.."
N=${1:-5000}
COUNT=${2:-3}
echo "running $COUNT rounds of $N jobs each ..." >&2
go test ./pkg/worker -run '^$' -bench 'Jobs' -benchtime "${N}x" -count "$COUNT" | tee /dev/stderr |
awk '/BenchmarkJobsEndToEnd/ {e += $5; ne++} /BenchmarkJobsRawNATS/ {r += $5; nr++}
     END { if (ne && nr) printf "ours %.0f jobs/s, raw %.0f jobs/s, ratio %.2f (target >= 0.8)\n", e/ne, r/nr, (e/ne)/(r/nr) }'
