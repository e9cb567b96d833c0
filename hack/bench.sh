#!/usr/bin/env bash
# bench.sh: the create, delete and memory benchmarks against real binaries.
# Prints the machine and the raw `go test -bench` results (custom metrics:
# *-p50-ms, *-p90-ms, *-min-ms, *-max-ms, rss/pss/anon-MiB); docs/benchmarks.md
# records them. COUNT sets the iterations per benchmark (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh >/dev/null
count=${COUNT:-10}
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(go version | cut -d' ' -f3)"
echo "command: COUNT=$count hack/bench.sh"
EPHEMERA_BIN="$PWD/bin/ephemera" exec go test -run '^$' -bench "${BENCH:-.}" -benchtime "${count}x" -timeout 60m ./test/e2e/
