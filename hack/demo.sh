#!/usr/bin/env bash
# demo.sh: the whole story in one run. Installs what is missing, creates a
# cluster with 3 simulated nodes, deploys a 3-replica Deployment and waits for
# it, shows nodes and pods, and deletes the cluster, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh

E=bin/ephemera
name=ephemera-demo
workdir=$(mktemp -d)
cleanup() {
  $E delete cluster "$name" || true
  rm -rf "$workdir"
}
trap cleanup EXIT

if [ -t 1 ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi

step "Create a cluster with 3 simulated nodes"
$E create cluster "$name" --simulated-nodes 3

step "Use it with kubectl"
$E get kubeconfig "$name" > "$workdir/kubeconfig"
kubectl() { "$($E kube path kubectl)" --kubeconfig "$workdir/kubeconfig" "$@"; }
kubectl version
kubectl get nodes -o wide

step "Deploy 3 replicas and wait until the Deployment is Available"
kubectl create deployment web --image=registry.k8s.io/pause:3.10 --replicas=3
kubectl wait deployment/web --for=condition=Available --timeout=60s
kubectl get pods -o wide

step "Clusters"
$E get clusters

step "Delete the cluster"
$E delete cluster "$name"
trap - EXIT
rm -rf "$workdir"
echo "Done: nothing is left behind."
