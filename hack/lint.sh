#!/usr/bin/env bash
# lint.sh: gofmt, go vet and golangci-lint (.golangci.yml). golangci-lint is
# built once from the Go module proxy at a pinned version into a cache dir
# (EPHEMERA_TOOLS, default ~/.cache/ephemera/tools) and reused after that.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v2.15.0
tools=${EPHEMERA_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ephemera/tools}
bin=$tools/golangci-lint-$version

if [ ! -x "$bin" ]; then
  echo " • Building golangci-lint $version into $tools (once)" >&2
  mkdir -p "$tools"
  tmp=$(mktemp -d "$tools/.install.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  GOBIN=$tmp go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version"
  mv "$tmp/golangci-lint" "$bin"
fi

unformatted=$(gofmt -l .)
[ -z "$unformatted" ] || { echo "ERROR: gofmt would change: $unformatted" >&2; exit 1; }
go vet ./...
"$bin" run ./...
