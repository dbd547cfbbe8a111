#!/usr/bin/env bash
# Builds the node binary and runs the replication benchmark (see main.go,
# faults.go and bench/README.md, "## Replication"). Throughput, lag and
# failover run node processes on 127.0.0.241-243; the fault modes run them
# on hosts made of network namespaces (198.18.X.0/24), which needs root.
# Results go to stdout, progress (a line per run) to stderr. Extra
# arguments go to the benchmark, e.g.
#   bench/replication/run.sh -what failover -runs 20
#   bench/replication/run.sh -what throughput,lag -duration 10s
#   sudo bench/replication/run.sh -what faults -runs 20 > faults.txt
#   sudo bench/replication/run.sh -what kill,pause,partition -runs 5 -observe 5s
#   sudo bench/replication/run.sh -what pause-replica,partition-replica -replica-fault 5s
# Fault modes: kill, pause, partition (of the primary), pause-replica,
# partition-replica; "faults" is all five (about 40 minutes at 20 runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
echo "building cmd/node" >&2
go build -o "$bin/node" ./cmd/node
go build -o "$bin/replication" ./bench/replication
"$bin/replication" -node "$bin/node" "$@"
