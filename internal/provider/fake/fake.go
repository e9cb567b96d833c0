// Package fake is a fake provider whose clusters are map entries, for unit
// tests of the server's bookkeeping (provisioner, reconcilers, reaper). It
// runs nothing; the real local provider is tested end to end.
package fake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

var (
	_ provider.Provider  = (*Provider)(nil)
	_ provider.Labeler   = (*Provider)(nil)
	_ provider.Restarter = (*Provider)(nil)
)

// Provider is a fake provider. Its clusters are Running once created.
type Provider struct {
	mu       sync.Mutex
	clusters map[string]*provider.Cluster
	// Deleted and Restarted record the clusters deleted and restarted.
	deleted, restarted []string
	failDeletes        int
	created            int
}

// New returns a fake provider with the given clusters.
func New(cs ...provider.Cluster) *Provider {
	f := &Provider{clusters: map[string]*provider.Cluster{}}
	for _, c := range cs {
		f.clusters[c.Name] = &c
	}
	return f
}

// Name implements provider.Provider.
func (f *Provider) Name() string { return "fake" }

// Create implements provider.Provider: the cluster is Running at once.
func (f *Provider) Create(_ context.Context, name string, spec v1alpha1.ClusterTemplateSpec, opts provider.CreateOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.clusters[name]; ok {
		return fmt.Errorf("%w: %q", provider.ErrAlreadyExists, name)
	}
	f.created++
	// The message makes each create's kubeconfig differ, as new
	// certificates would.
	f.clusters[name] = &provider.Cluster{Name: name, Provider: "fake", Phase: provider.PhaseRunning, Labels: maps.Clone(opts.Labels),
		KubernetesVersion: spec.KubernetesVersion, Endpoint: "https://" + name + ".invalid", Message: fmt.Sprintf("create %d", f.created)}
	return nil
}

// Get implements provider.Provider.
func (f *Provider) Get(_ context.Context, name string) (*provider.Cluster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clusters[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", provider.ErrNotFound, name)
	}
	cp := *c
	cp.Labels = maps.Clone(c.Labels)
	return &cp, nil
}

// List implements provider.Provider.
func (f *Provider) List(ctx context.Context) ([]provider.Cluster, error) {
	f.mu.Lock()
	names := slices.Sorted(maps.Keys(f.clusters))
	f.mu.Unlock()
	var out []provider.Cluster
	for _, n := range names {
		if c, err := f.Get(ctx, n); err == nil {
			out = append(out, *c)
		}
	}
	return out, nil
}

// Kubeconfig implements provider.Provider: a kubeconfig naming the cluster
// and its generation (Recreate bumps it), not a usable one.
func (f *Provider) Kubeconfig(ctx context.Context, name string) ([]byte, error) {
	c, err := f.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return []byte("fake kubeconfig of " + name + " " + c.Message), nil
}

// Delete implements provider.Provider.
func (f *Provider) Delete(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failDeletes > 0 {
		f.failDeletes--
		return errors.New("injected delete failure")
	}
	if _, ok := f.clusters[name]; ok {
		f.deleted = append(f.deleted, name)
	}
	delete(f.clusters, name)
	return nil
}

// SetLabels implements provider.Labeler: it records labels, like the local
// provider.
func (f *Provider) SetLabels(_ context.Context, name string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clusters[name]
	if !ok {
		return fmt.Errorf("%w: %q", provider.ErrNotFound, name)
	}
	c.Labels = maps.Clone(labels)
	return nil
}

// Restart implements provider.Restarter: it records the restart and makes
// the cluster Running.
func (f *Provider) Restart(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clusters[name]
	if !ok {
		return fmt.Errorf("%w: %q", provider.ErrNotFound, name)
	}
	f.restarted = append(f.restarted, name)
	c.Phase = provider.PhaseRunning
	return nil
}

// SetPhase changes what Get reports of a cluster.
func (f *Provider) SetPhase(name string, p provider.Phase) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clusters[name]; ok {
		c.Phase = p
	}
}

// SetMessage changes a cluster's message, and so its kubeconfig, as new
// certificates would.
func (f *Provider) SetMessage(name, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clusters[name]; ok {
		c.Message = msg
	}
}

// FailDeletes makes the next n deletes fail.
func (f *Provider) FailDeletes(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failDeletes = n
}

// Deleted returns the clusters deleted so far.
func (f *Provider) Deleted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deleted)
}

// Restarted returns the clusters restarted so far.
func (f *Provider) Restarted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.restarted)
}

// Has reports whether the cluster exists.
func (f *Provider) Has(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.clusters[name]
	return ok
}

// Create stands in for lifecycle.Create: it creates the cluster and
// returns it, without waiting for an API the fake does not run.
func Create(ctx context.Context, p provider.Provider, name string, spec v1alpha1.ClusterTemplateSpec, opts lifecycle.CreateOptions) (*provider.Cluster, error) {
	if err := p.Create(ctx, name, spec, provider.CreateOptions{Labels: opts.Labels}); err != nil {
		return nil, err
	}
	return p.Get(ctx, name)
}

// Adopt stands in for lifecycle.Adopt: the cluster is usable when it is
// Running.
func Adopt(ctx context.Context, p provider.Provider, name string, _ lifecycle.CreateOptions) (*provider.Cluster, error) {
	c, err := p.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if c.Phase != provider.PhaseRunning {
		return nil, fmt.Errorf("cluster %q is %s", name, c.Phase)
	}
	return c, nil
}
