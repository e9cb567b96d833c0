// Package kube builds Kubernetes components from the Go module proxy into a versioned cache and finds them again.
package kube
