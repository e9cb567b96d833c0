#!/usr/bin/env bash
# demo.sh: the whole story in one run. Installs what is missing, creates a
# cluster with one real node, builds an image of a small HTTP server
# (examples/hello) without Docker and pushes it to the host's local registry, runs it behind a Service,
# reaches it from another pod by DNS name and from the host through a
# LoadBalancer address, prints the answers, and deletes the cluster, even on
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh

E=bin/ephemera
name=ephemera-demo
workdir=$(mktemp -d)
# The demo's own registry cache, removed at the end (yours lives under
# ~/.cache/ephemera/registry and is kept between clusters).
export EPHEMERA_REGISTRY_DIR="$workdir/registry"
cleanup() {
  $E delete cluster "$name" || true
  $E registry stop --purge || true
  rm -rf "$workdir"
}
trap cleanup EXIT

if [ -t 1 ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi

step "Create a cluster with one real node (kubelet, containerd, CNI, kube-proxy, CoreDNS)"
$E create cluster "$name"

step "Build an image of examples/hello without Docker and push it to the host's local registry"
CGO_ENABLED=0 go build -o "$workdir/hello" ./examples/hello
image=$($E build image --from-binary "$workdir/hello" --tag hello:v1 --push)
echo "Every cluster on this host pulls it as $image"

step "Run it behind a Service"
$E get kubeconfig "$name" > "$workdir/kubeconfig"
kubectl() { "$($E kube path kubectl)" --kubeconfig "$workdir/kubeconfig" "$@"; }
kubectl get nodes -o wide
kubectl create deployment hello --image="$image" --port=8080 -- /hello serve
kubectl expose deployment hello --port=80 --target-port=8080
kubectl rollout status deployment/hello --timeout=60s

step "Call it from another pod by its DNS name"
kubectl run client --image="$image" --restart=Never -- get http://hello.default.svc.cluster.local/
kubectl wait pod/client --for=jsonpath='{.status.phase}'=Succeeded --timeout=60s
echo "The client pod got: $(kubectl logs client)"
kubectl get pods -A -o wide

step "Expose it as a LoadBalancer Service and call it from the host"
kubectl expose deployment hello --name hello-lb --type LoadBalancer --port 80 --target-port 8080
for _ in $(seq 100); do
  ip=$(kubectl get service hello-lb -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
  [ -n "$ip" ] && break
  sleep 0.1
done
echo "hello-lb has the address $ip; the host got: $("$workdir/hello" get "http://$ip/")"

step "Clusters"
$E get clusters -o wide

step "The registry cache every real-node cluster pulls through"
$E registry status
step "Delete the cluster"
$E delete cluster "$name"
$E registry stop --purge
trap - EXIT
rm -rf "$workdir"
echo "Done: nothing is left behind."
