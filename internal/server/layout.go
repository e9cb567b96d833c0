package server

import (
	"fmt"
	"path/filepath"

	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
)

// Layout is where a state dir keeps the server's files and the kubeconfigs
// the CLI writes for TestClusters. It is the one place that joins these
// paths; serve, the CLI and the tests ask it. The paths are part of the
// interface (users and scripts read server/kubeconfig), so they never
// change:
//
//	<state-dir>/
//	  clusters/, ports.lock      the clusters the server hands out (local provider)
//	  kubeconfigs/NS/NAME        TestCluster kubeconfigs written by the CLI
//	  server/                    the server's own dir
//	    serve.lock               held by the one serve of this state dir
//	    kubeconfig               the management plane's admin kubeconfig
//	    artifacts/NS/NAME/       TestRun artefacts (embedded mode)
//	    clusters/management/, ports.lock
//	                             the management plane (a local provider of its own)
type Layout struct {
	stateDir string
}

// NewLayout returns the layout of stateDir, as given (a relative dir gives
// relative paths).
func NewLayout(stateDir string) Layout { return Layout{stateDir: stateDir} }

// Dir is the server's own dir. Deleting it starts the server over (its
// objects are lost).
func (l Layout) Dir() string { return filepath.Join(l.stateDir, "server") }

// Lock is the file the one serve of this state dir holds locked, in every
// mode.
func (l Layout) Lock() string { return filepath.Join(l.Dir(), "serve.lock") }

// Kubeconfig is where serve writes the embedded management plane's admin
// kubeconfig, and where the CLI looks for the server by default.
func (l Layout) Kubeconfig() string { return filepath.Join(l.Dir(), "kubeconfig") }

// Artifacts is the root of TestRun artefacts in embedded mode; the
// management plane's node mounts it.
func (l Layout) Artifacts() string { return filepath.Join(l.Dir(), "artifacts") }

// ManagementPlaneStateDir is the state dir of the local provider that keeps
// the management plane, apart from the clusters it manages.
func (l Layout) ManagementPlaneStateDir() string { return l.Dir() }

// LeaseKubeconfigs is the dir of the TestCluster kubeconfigs the CLI
// writes.
func (l Layout) LeaseKubeconfigs() string { return filepath.Join(l.stateDir, "kubeconfigs") }

// LeaseKubeconfig is where the CLI writes a TestCluster's kubeconfig unless
// told otherwise.
func (l Layout) LeaseKubeconfig(namespace, name string) string {
	return filepath.Join(l.LeaseKubeconfigs(), namespace, name)
}

// ManagementPlaneProvider returns the provider that keeps the embedded
// management plane: r's local provider (same Kubernetes cache, supervisor
// and host network) with ManagementPlaneStateDir as its state dir,
// durable, so that etcd syncs every write to disk, and reaching the other
// clusters (see local.NetworkOptions.ReachClusters). It is the one way to
// build it; serve and 'load image --server' both use it.
func (l Layout) ManagementPlaneProvider(r *provider.Registry) (*local.Provider, error) {
	p, err := r.Get(local.Name)
	if err != nil {
		return nil, fmt.Errorf("the embedded management plane needs the %s provider: %w", local.Name, err)
	}
	lp, ok := p.(*local.Provider)
	if !ok {
		return nil, fmt.Errorf("the embedded management plane needs the %s provider, not a %T: %w", local.Name, p, provider.ErrUnsupported)
	}
	opts := lp.Options()
	opts.StateDir, opts.Durable = l.ManagementPlaneStateDir(), true
	// It shares the advertised address with the clusters.
	opts.AdvertiseWith = []string{l.stateDir}
	// Its runner pods reach the clusters' API servers and ingress.
	opts.Network.ReachClusters = true
	return local.New(opts), nil
}

// ManagementPlane returns the embedded management plane of this state dir:
// kept by ManagementPlaneProvider, its kubeconfig written to Kubeconfig.
// The caller sets RunnerNode.
func (l Layout) ManagementPlane(r *provider.Registry) (*ManagementPlane, error) {
	p, err := l.ManagementPlaneProvider(r)
	if err != nil {
		return nil, err
	}
	return &ManagementPlane{Provider: p, KubeconfigPath: l.Kubeconfig()}, nil
}
