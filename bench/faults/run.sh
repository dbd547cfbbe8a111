#!/usr/bin/env bash
# Builds the node binary and runs issue 14's fault run (main.go,
# internal/faultrun; method in bench/README.md, "## Fault run (stage 8,
# eight hosts)"). Needs root: the eight nodes run in network namespaces
# (198.18.X.0/24). The table goes to stdout, a line per second and per
# event to stderr. Extra arguments go to the program, e.g.
#   sudo bench/faults/run.sh > faults.md                  # 5 runs x 95 s, about 15 minutes
#   sudo bench/faults/run.sh -runs 1 -faults kill-primary,partition-primary
#   sudo bench/faults/run.sh -runs 2 -keep /tmp/faults    # keep the nodes' logs
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
echo "building cmd/node" >&2
go build -o "$bin/node" ./cmd/node
go build -o "$bin/faults" ./bench/faults
"$bin/faults" -node "$bin/node" "$@"
