#!/usr/bin/env bash
# bench.sh: ephemera next to the peers users would pick instead (kwokctl with
# its binary runtime, controller-runtime's envtest), on this machine, with the
# same Kubernetes binaries, in one run (test/bench). Prints the tables and
# rewrites the generated section of docs/benchmarks.md. About 15 minutes.
#
#   QUICK=1 (or BENCH_QUICK=1)  few samples, for development; prints only
#                               (set DOC=docs/benchmarks.md to write anyway)
#   DOC=FILE                    the Markdown file to rewrite ("" to print only)
#   BENCH_ARGS='--skip server'  more flags (bin/ephemera-bench --help)
#
# BENCH=REGEX runs the Go benchmarks of test/e2e matching it instead, as the
# hand-written sections of docs/benchmarks.md record them (COUNT iterations
# each, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh >/dev/null

if [[ -n "${BENCH:-}" ]]; then
  count=${COUNT:-10}
  echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(go version | cut -d' ' -f3)"
  echo "command: COUNT=$count BENCH='$BENCH' hack/bench.sh"
  EPHEMERA_BIN="$PWD/bin/ephemera" exec go test -run '^$' -bench "$BENCH" -benchtime "${count}x" -timeout 60m ./test/e2e/
fi

go build -o bin/ephemera-bench ./test/bench
args=(--ephemera bin/ephemera --repo .)
if [[ "${QUICK:-${BENCH_QUICK:-}}" == 1 ]]; then
  args+=(--quick --command "make bench QUICK=1")
  doc=${DOC-}
else
  args+=(--command "make bench")
  doc=${DOC-docs/benchmarks.md}
fi
[[ -n "$doc" ]] && args+=(--doc "$doc")
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
exec bin/ephemera-bench "${args[@]}" ${BENCH_ARGS:-}
