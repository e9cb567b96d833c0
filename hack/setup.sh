#!/usr/bin/env bash
# setup.sh: make this machine ready to run ephemera: OS packages, the ephemera
# binary, the Helm CLI the tests use, and the Kubernetes versions given as
# arguments (default: the default version). Everything is cached; a second run
# takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# OS packages. The control plane and simulated nodes need none beyond Go;
# real nodes run containerd, runc, CNI plugins, iptables and conntrack from
# the distribution.
packages=(ca-certificates containerd runc containernetworking-plugins iptables iproute2 conntrack util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo " • Installing OS packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || { echo "ERROR: Go is not on PATH; install Go 1.26 or newer" >&2; exit 1; }

echo " • Building bin/ephemera" >&2
go build -o bin/ephemera ./cmd/ephemera

# The Helm CLI, which the addon tests use to list, push and inspect what
# ephemera installs with the Helm SDK: built once from the Go module proxy at
# a pinned version into the tools cache (EPHEMERA_TOOLS, as hack/lint.sh's
# golangci-lint), where test/e2e finds it (or set EPHEMERA_HELM).
helm_version=v4.3.2
tools=${EPHEMERA_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ephemera/tools}
if [ ! -x "$tools/helm-$helm_version" ]; then
  echo " • Building the Helm CLI $helm_version into $tools (once)" >&2
  mkdir -p "$tools"
  tmp=$(mktemp -d "$tools/.install.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  GOBIN=$tmp go install "helm.sh/helm/v4/cmd/helm@$helm_version"
  mv "$tmp/helm" "$tools/helm-$helm_version"
fi

versions=("$@")
if ((${#versions[@]} == 0)); then
  bin/ephemera kube install
else
  for v in "${versions[@]}"; do bin/ephemera kube install --version "$v"; done
fi
