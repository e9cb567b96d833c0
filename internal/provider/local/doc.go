// Package local runs Kubernetes clusters as processes on this host: etcd and the upstream control plane, with simulated nodes.
package local
