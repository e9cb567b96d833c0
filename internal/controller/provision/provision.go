// Package provision builds and deletes the clusters a server manages, in
// the background, and remembers how far each one got.
package provision

import (
	"context"
	"errors"
	"maps"
	"runtime"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// State is how far a cluster got.
type State string

// States of a cluster the provisioner knows.
const (
	// Creating: being created, or being checked after a server restart.
	Creating State = "Creating"
	// Ready: usable, its kubeconfig read.
	Ready State = "Ready"
	// Failed: creating it failed; what was started is deleted.
	Failed State = "Failed"
)

// Status is what the provisioner knows of one cluster.
type Status struct {
	// Name is the provider's cluster name.
	Name string
	// State is how far it got.
	State State
	// Err says why it Failed.
	Err error
	// Labels were given at create.
	Labels map[string]string
	// Cluster is the provider's view once Ready.
	Cluster *provider.Cluster
	// Kubeconfig is an admin kubeconfig once Ready.
	Kubeconfig []byte
	// Started, Provisioned (API usable) and ReadyAt time its steps.
	Started, Provisioned, ReadyAt time.Time
}

// Options configure a Provisioner.
type Options struct {
	// Wait bounds the wait for a new cluster to be ready.
	Wait time.Duration
	// MaxConcurrentCreates bounds creates that run at once; more wait.
	MaxConcurrentCreates int
	// Notify is called, from any goroutine, whenever a cluster's state
	// changes.
	Notify func(Status)
	// Observe is called with the duration of each successful create.
	Observe func(d time.Duration)
	// Log receives what happens.
	Log logr.Logger
}

// Provisioner runs creates in the background so that reconcilers never
// block on them. It is safe for concurrent use.
type Provisioner struct {
	p    provider.Provider
	opts Options
	sem  chan struct{}

	mu   sync.Mutex
	jobs map[string]*job
}

type job struct {
	status Status
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a provisioner of p's clusters.
func New(p provider.Provider, opts Options) *Provisioner {
	if opts.MaxConcurrentCreates <= 0 {
		// Creates are CPU-bound: more at once than cores only slows each.
		opts.MaxConcurrentCreates = max(2, runtime.NumCPU())
	}
	if opts.Wait <= 0 {
		opts.Wait = 3 * time.Minute
	}
	if opts.Notify == nil {
		opts.Notify = func(Status) {}
	}
	if opts.Observe == nil {
		opts.Observe = func(time.Duration) {}
	}
	return &Provisioner{p: p, opts: opts, sem: make(chan struct{}, opts.MaxConcurrentCreates), jobs: map[string]*job{}}
}

// Provider returns the provider the clusters live in.
func (r *Provisioner) Provider() provider.Provider { return r.p }

// Ensure starts creating the cluster unless it is known already, and
// returns what is known. A cluster that exists in the provider but is not
// known (a server restart) is adopted: checked until usable, not rebuilt.
func (r *Provisioner) Ensure(name string, spec v1alpha1.ClusterTemplateSpec, labels map[string]string) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j, ok := r.jobs[name]; ok {
		return j.status
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{
		status: Status{Name: name, State: Creating, Labels: maps.Clone(labels), Started: time.Now()},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	r.jobs[name] = j
	go r.run(ctx, j, spec)
	return j.status
}

// Get returns what is known of a cluster.
func (r *Provisioner) Get(name string) (Status, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j, ok := r.jobs[name]
	if !ok {
		return Status{}, false
	}
	return j.status, true
}

// Snapshot returns what is known of every cluster.
func (r *Provisioner) Snapshot() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, 0, len(r.jobs))
	for _, j := range r.jobs {
		out = append(out, j.status)
	}
	return out
}

// Forget drops a Failed cluster, whose create already removed what it
// started.
func (r *Provisioner) Forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j, ok := r.jobs[name]; ok && j.status.State == Failed {
		delete(r.jobs, name)
	}
}

// Delete stops a create under way and deletes the cluster. Deleting an
// unknown cluster deletes it from the provider all the same.
func (r *Provisioner) Delete(ctx context.Context, name string) error {
	r.mu.Lock()
	j := r.jobs[name]
	r.mu.Unlock()
	if j != nil {
		j.cancel()
		select {
		case <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.opts.Log.Info("Deleting cluster", "cluster", name)
	if err := lifecycle.Delete(ctx, r.p, name); err != nil {
		return err
	}
	r.mu.Lock()
	if r.jobs[name] == j {
		delete(r.jobs, name)
	}
	r.mu.Unlock()
	r.opts.Notify(Status{Name: name, Labels: labelsOf(j)})
	return nil
}

func labelsOf(j *job) map[string]string {
	if j == nil {
		return nil
	}
	return j.status.Labels
}

// Load adopts every cluster of the provider whose labels include match, so
// that a restarted server knows them again. Broken ones, such as a create
// the previous server was killed in, are deleted instead: their owners
// build them again. It returns how many it adopted and deleted.
func (r *Provisioner) Load(ctx context.Context, match map[string]string) (adopted, deleted int, err error) {
	cs, err := r.p.List(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, c := range cs {
		if !Matches(c.Labels, match) {
			continue
		}
		if c.Phase == provider.PhaseBroken {
			r.opts.Log.Info("Deleting broken cluster found at start", "cluster", c.Name, "reason", c.Message)
			if err := lifecycle.Delete(ctx, r.p, c.Name); err != nil {
				return adopted, deleted, err
			}
			deleted++
			continue
		}
		adopted++
		r.Ensure(c.Name, v1alpha1.ClusterTemplateSpec{}, c.Labels)
	}
	return adopted, deleted, nil
}

// Matches reports whether labels include every pair of match.
func Matches(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (r *Provisioner) run(ctx context.Context, j *job, spec v1alpha1.ClusterTemplateSpec) {
	defer close(j.done)
	name := j.status.Name
	log := r.opts.Log.WithValues("cluster", name)
	select {
	case r.sem <- struct{}{}:
		defer func() { <-r.sem }()
	case <-ctx.Done():
		r.finish(j, nil, nil, ctx.Err())
		return
	}
	var provisioned time.Time
	opts := lifecycle.CreateOptions{
		Wait:        r.opts.Wait,
		Labels:      j.status.Labels,
		OnAPIUsable: func() { provisioned = time.Now() },
	}
	start := time.Now()
	var c *provider.Cluster
	var err error
	_, gerr := r.p.Get(ctx, name)
	adopted := gerr == nil
	if adopted {
		log.Info("Adopting cluster")
		if c, err = lifecycle.Adopt(ctx, r.p, name, opts); err != nil && ctx.Err() == nil {
			// A cluster that cannot become usable again is of no use.
			_ = lifecycle.Delete(context.WithoutCancel(ctx), r.p, name)
		}
	} else {
		log.Info("Creating cluster")
		c, err = lifecycle.Create(ctx, r.p, name, spec, opts)
	}
	var kubeconfig []byte
	if err == nil {
		kubeconfig, err = r.p.Kubeconfig(ctx, name)
	}
	if err == nil {
		if !adopted {
			r.opts.Observe(time.Since(start))
		}
		log.Info("Cluster ready", "seconds", time.Since(start).Seconds())
	} else if !errors.Is(err, context.Canceled) {
		log.Error(err, "Cluster failed")
	}
	r.mu.Lock()
	j.status.Provisioned = provisioned
	r.mu.Unlock()
	r.finish(j, c, kubeconfig, err)
}

func (r *Provisioner) finish(j *job, c *provider.Cluster, kubeconfig []byte, err error) {
	r.mu.Lock()
	if err != nil {
		j.status.State, j.status.Err = Failed, err
	} else {
		j.status.State, j.status.Cluster, j.status.Kubeconfig, j.status.ReadyAt = Ready, c, kubeconfig, time.Now()
	}
	st := j.status
	r.mu.Unlock()
	r.opts.Notify(st)
}
