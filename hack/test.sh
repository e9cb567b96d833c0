#!/usr/bin/env bash
# test.sh: install what is missing (OS packages, both tested Kubernetes
# versions, cached), then run every test against the real binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh v1.36.3 v1.35.4
echo " • Checking formatting, vet, lint and generated code" >&2
make -s lint
make -s verify-generate
echo " • Running tests" >&2
# -p 1: packages one at a time. internal/provider/local and test/e2e both
# run real clusters, and each test's host census would count the other's.
EPHEMERA_BIN="$PWD/bin/ephemera" go test -p 1 -count=1 -timeout 40m "$@" ./...
