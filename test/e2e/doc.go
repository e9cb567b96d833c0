// Package e2e tests the ephemera binary end to end against real Kubernetes binaries.
package e2e
