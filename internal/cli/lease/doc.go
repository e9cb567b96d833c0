// Package lease waits for a TestCluster of the ephemera server to be Ready
// and hands out its kubeconfig; `create testcluster` and `run` share it.
package lease
