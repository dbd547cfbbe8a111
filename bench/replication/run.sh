#!/usr/bin/env bash
# Builds the node binary and runs the replication benchmark against real
# node processes on 127.0.0.241-243 (see main.go and bench/README.md,
# "## Replication"). Extra arguments go to the benchmark, e.g.
#   bench/replication/run.sh -what failover -runs 20
#   bench/replication/run.sh -what throughput,lag -duration 10s
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
echo "building cmd/node" >&2
go build -o "$bin/node" ./cmd/node
go build -o "$bin/replication" ./bench/replication
"$bin/replication" -node "$bin/node" "$@"
