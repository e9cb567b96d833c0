// Package provision builds and deletes the clusters a server manages, in
// the background, remembers how far each one got, and keeps looking at the
// Ready ones so that a cluster whose processes died is never handed out.
package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/failpoint"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// State is how far a cluster got.
type State string

// States of a cluster the provisioner knows.
const (
	// Creating: being created, its addons being installed, or being
	// checked after a server restart.
	Creating State = "Creating"
	// Ready: usable, its addons installed, its kubeconfig read.
	Ready State = "Ready"
	// Failed: creating or adopting it failed. A create that failed
	// removed what it started; an adopted cluster that failed is kept for
	// its owner to delete.
	Failed State = "Failed"
	// Lost: it was Ready, and the provider no longer reports it Running
	// (its processes died, or it is gone). It turns Ready again if the
	// provider reports it Running again.
	Lost State = "Lost"
	// Deleting: a delete is under way, or failed and is retried. Such a
	// cluster is never handed out.
	Deleting State = "Deleting"
)

// Status is what the provisioner knows of one cluster.
type Status struct {
	// Name is the provider's cluster name.
	Name string
	// State is how far it got.
	State State
	// Err says why it is Failed, Lost, or why its delete failed.
	Err error
	// Labels are the labels recorded with the cluster (given at create,
	// changed by Claim).
	Labels map[string]string
	// Cluster is the provider's view once Ready.
	Cluster *provider.Cluster
	// Kubeconfig is an admin kubeconfig once Ready.
	Kubeconfig []byte
	// Adopted: the cluster existed when this server came to know it (a
	// restart), rather than being created by it.
	Adopted bool
	// Started, Provisioned (API usable) and ReadyAt time its steps.
	Started, Provisioned, ReadyAt time.Time
	// Addons is how far its addons got.
	Addons AddonsStatus
}

// AddonsStatus is how far a cluster's addons got.
type AddonsStatus struct {
	// Phases name the template's addon phases, in order; empty when it has
	// none, and for a cluster adopted after a restart (its LabelAddons
	// says whether they were installed).
	Phases []string
	// Current is the phase being installed and waited on, if any.
	Current string
	// Ready are the phases installed and ready, in order, with how long
	// each took.
	Ready []addons.PhaseResult
	// Err says why they failed: an *addons.PhaseError, or why they could
	// not be read or rendered.
	Err error
}

// AddonInputs are what a cluster's addons read besides its spec.
type AddonInputs struct {
	// Namespace is where their ConfigMaps and Secrets are read: the
	// TestCluster's or pool's.
	Namespace string
	// Labels are what their templates see as {{ .Labels.KEY }}: the
	// TestCluster's labels, or the pool's.
	Labels map[string]string
}

// ErrAddonsInterrupted is a Failed cluster's error when a server stopped
// while its addons were being installed.
var ErrAddonsInterrupted = errors.New("the server stopped while the cluster's addons were being installed")

// ErrNotUsable is returned by Claim for a cluster that is not Ready.
var ErrNotUsable = errors.New("cluster is not usable")

// Options configure a Provisioner.
type Options struct {
	// Wait bounds the wait for a new cluster to be ready.
	Wait time.Duration
	// MaxConcurrentCreates bounds creates that run at once; more wait.
	MaxConcurrentCreates int
	// ObserveInterval is how often Ready clusters are looked at again
	// (see Start).
	ObserveInterval time.Duration
	// Notify is called, from any goroutine, whenever a cluster's state
	// changes.
	Notify func(Status)
	// Observe is called with the duration of each successful create.
	Observe func(d time.Duration)
	// Reader reads the ConfigMaps and Secrets addons name.
	Reader client.Reader
	// OnAddonPhase, when set, is called as an addon phase of a cluster
	// starts, becomes ready or fails, with the cluster's status after it.
	OnAddonPhase func(Status, addons.PhaseEvent)
	// Now is the clock.
	Now func() time.Time
	// Log receives what happens.
	Log logr.Logger
	// Create and Adopt build and check clusters; lifecycle.Create and
	// lifecycle.Adopt when nil. Unit tests with a fake provider, whose
	// clusters have no API to wait for, replace them.
	Create func(ctx context.Context, p provider.Provider, name string, spec v1alpha1.ClusterTemplateSpec, opts lifecycle.CreateOptions) (*provider.Cluster, error)
	Adopt  func(ctx context.Context, p provider.Provider, name string, opts lifecycle.CreateOptions) (*provider.Cluster, error)
}

// Provisioner runs creates in the background so that reconcilers never
// block on them. It is safe for concurrent use.
type Provisioner struct {
	p    provider.Provider
	opts Options
	sem  chan struct{}

	mu     sync.Mutex
	jobs   map[string]*job
	loaded bool
	// base bounds background deletes; Start replaces it with its context.
	base context.Context
}

type job struct {
	status    Status
	cancel    context.CancelFunc
	done      chan struct{}
	releasing bool
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
	if opts.ObserveInterval <= 0 {
		opts.ObserveInterval = 5 * time.Second
	}
	if opts.Notify == nil {
		opts.Notify = func(Status) {}
	}
	if opts.Observe == nil {
		opts.Observe = func(time.Duration) {}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Create == nil {
		opts.Create = lifecycle.Create
	}
	if opts.Adopt == nil {
		opts.Adopt = lifecycle.Adopt
	}
	return &Provisioner{p: p, opts: opts, sem: make(chan struct{}, opts.MaxConcurrentCreates), jobs: map[string]*job{}, base: context.Background()}
}

// Provider returns the provider the clusters live in.
func (r *Provisioner) Provider() provider.Provider { return r.p }

// Ensure starts creating the cluster unless it is known already, and
// returns what is known. The cluster is Ready once it is usable and the
// spec's addons are installed (reading what in says); until then its labels
// record LabelAddons AddonsPending. A cluster that exists in the provider
// but is not known (a server restart) is adopted: checked until usable,
// restarted on its data if its processes are gone, never rebuilt or
// deleted; one whose addons were being installed is Failed with
// ErrAddonsInterrupted.
func (r *Provisioner) Ensure(name string, spec v1alpha1.ClusterTemplateSpec, labels map[string]string, in AddonInputs) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j, ok := r.jobs[name]; ok {
		return j.status
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{
		status: Status{Name: name, State: Creating, Labels: maps.Clone(labels), Started: r.opts.Now()},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	if len(spec.Addons) > 0 {
		if j.status.Labels == nil {
			j.status.Labels = map[string]string{}
		}
		j.status.Labels[LabelAddons] = AddonsPending
		for _, ph := range spec.Addons {
			j.status.Addons.Phases = append(j.status.Addons.Phases, ph.Name)
		}
	}
	r.jobs[name] = j
	go r.run(ctx, j, spec, in)
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

// Claim records on a Ready cluster that it is bound to the TestCluster tc,
// in the provider's labels (so the record survives a restart) and in
// memory, after checking with the provider that the cluster still runs. A
// cluster that does not is marked Lost and ErrNotUsable returned.
func (r *Provisioner) Claim(ctx context.Context, name string, tc *v1alpha1.TestCluster) error {
	r.mu.Lock()
	j, ok := r.jobs[name]
	var labels map[string]string
	if ok {
		labels = maps.Clone(j.status.Labels)
	}
	r.mu.Unlock()
	if !ok || j.status.State != Ready {
		return fmt.Errorf("claim cluster %q: %w", name, ErrNotUsable)
	}
	c, err := r.p.Get(ctx, name)
	if healthy, why := usable(c, err); !healthy {
		r.setLost(j, why)
		return fmt.Errorf("claim cluster %q: %w: %w", name, ErrNotUsable, why)
	}
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelTestCluster], labels[LabelTestClusterUID] = tc.Name, string(tc.UID)
	if l, ok := r.p.(provider.Labeler); ok {
		if err := l.SetLabels(ctx, name, labels); err != nil {
			return fmt.Errorf("claim cluster %q: record the claim: %w", name, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jobs[name] != j || j.status.State != Ready {
		return fmt.Errorf("claim cluster %q: %w", name, ErrNotUsable)
	}
	j.status.Labels = labels
	return nil
}

// Delete stops a create under way and deletes the cluster. Deleting an
// unknown cluster deletes it from the provider all the same. While it
// runs, and after it failed, the cluster is Deleting and never handed out.
func (r *Provisioner) Delete(ctx context.Context, name string) error {
	j := r.markDeleting(name)
	j.cancel()
	select {
	case <-j.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.opts.Log.Info("Deleting cluster", "cluster", name)
	if err := lifecycle.Delete(ctx, r.p, name); err != nil {
		r.mu.Lock()
		j.status.Err = err
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	if r.jobs[name] == j {
		delete(r.jobs, name)
	}
	st := j.status
	r.mu.Unlock()
	r.opts.Notify(Status{Name: name, Labels: st.Labels})
	return nil
}

// markDeleting returns the job of name, made Deleting; an unknown cluster
// gets a finished job.
func (r *Provisioner) markDeleting(name string) *job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.markDeletingLocked(name)
}

func (r *Provisioner) markDeletingLocked(name string) *job {
	j, ok := r.jobs[name]
	if !ok {
		j = &job{status: Status{Name: name, Started: r.opts.Now()}, cancel: func() {}, done: make(chan struct{})}
		close(j.done)
		r.jobs[name] = j
	}
	j.status.State = Deleting
	return j
}

// Release deletes a cluster nobody may claim any more, in the background,
// retrying with backoff until the delete succeeds or the provisioner
// stops. It returns at once; the cluster is Deleting meanwhile.
func (r *Provisioner) Release(name string) {
	r.mu.Lock()
	if j := r.jobs[name]; j != nil && j.releasing {
		r.mu.Unlock()
		return
	}
	j := r.markDeletingLocked(name)
	j.releasing = true
	base := r.base
	r.mu.Unlock()
	go func() {
		backoff := time.Second
		for {
			ctx, cancel := context.WithTimeout(base, 2*time.Minute)
			err := r.Delete(ctx, name)
			cancel()
			if err == nil || base.Err() != nil {
				break
			}
			r.opts.Log.Error(err, "Deleting a released cluster; retrying", "cluster", name, "in", backoff)
			select {
			case <-base.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
		r.mu.Lock()
		j.releasing = false
		r.mu.Unlock()
	}()
}

// Releasing reports whether a background delete of name is under way.
func (r *Provisioner) Releasing(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.jobs[name]
	return j != nil && j.releasing
}

// Load adopts every cluster of the provider whose labels include match, so
// that a restarted server knows them again. Nothing is deleted here: a
// cluster whose processes are gone is restarted on its data, and one that
// cannot become usable again is Failed, for its owner to delete (a bound
// one stays until its lease ends). It returns how many it adopted.
func (r *Provisioner) Load(ctx context.Context, match map[string]string) (adopted int, err error) {
	cs, err := r.p.List(ctx)
	if err != nil {
		return 0, err
	}
	for _, c := range cs {
		if !Matches(c.Labels, match) {
			continue
		}
		adopted++
		r.Ensure(c.Name, v1alpha1.ClusterTemplateSpec{}, c.Labels, AddonInputs{})
	}
	r.mu.Lock()
	r.loaded = true
	r.mu.Unlock()
	return adopted, nil
}

// Loaded reports whether Load ran: until then the provisioner does not know
// the clusters of an earlier server, and nothing may be decided on its view.
func (r *Provisioner) Loaded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loaded
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

// Start looks at every Ready or Lost cluster again each ObserveInterval
// until ctx ends: a Ready cluster the provider no longer reports Running
// turns Lost, a Lost one that runs again turns Ready. Background deletes
// stop with ctx.
func (r *Provisioner) Start(ctx context.Context) error {
	r.mu.Lock()
	r.base = ctx
	r.mu.Unlock()
	t := time.NewTicker(r.opts.ObserveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.ObserveAll(ctx)
		}
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (r *Provisioner) NeedLeaderElection() bool { return true }

// ObserveAll looks at every Ready or Lost cluster once (see Start).
func (r *Provisioner) ObserveAll(ctx context.Context) {
	r.mu.Lock()
	var watched []*job
	for _, j := range r.jobs {
		if j.status.State == Ready || j.status.State == Lost {
			watched = append(watched, j)
		}
	}
	r.mu.Unlock()
	for _, j := range watched {
		c, err := r.p.Get(ctx, j.status.Name)
		if ctx.Err() != nil {
			return
		}
		if healthy, why := usable(c, err); healthy {
			r.setReady(j)
		} else {
			r.setLost(j, why)
		}
	}
}

// usable says whether the provider's view of a cluster lets it be used,
// and why not.
func usable(c *provider.Cluster, err error) (bool, error) {
	switch {
	case errors.Is(err, provider.ErrNotFound):
		return false, errors.New("the cluster is gone")
	case err != nil:
		return false, err
	case c.Phase != provider.PhaseRunning:
		return false, fmt.Errorf("the cluster is %s: %s", c.Phase, c.Message)
	}
	return true, nil
}

func (r *Provisioner) setLost(j *job, why error) {
	r.mu.Lock()
	if r.jobs[j.status.Name] != j || j.status.State != Ready && j.status.State != Lost {
		r.mu.Unlock()
		return
	}
	changed := j.status.State != Lost || fmt.Sprint(j.status.Err) != fmt.Sprint(why)
	if j.status.State != Lost {
		r.opts.Log.Info("Cluster stopped working", "cluster", j.status.Name, "reason", why.Error())
	}
	j.status.State, j.status.Err = Lost, why
	st := j.status
	r.mu.Unlock()
	if changed {
		r.opts.Notify(st)
	}
}

func (r *Provisioner) setReady(j *job) {
	r.mu.Lock()
	if r.jobs[j.status.Name] != j || j.status.State != Lost {
		r.mu.Unlock()
		return
	}
	r.opts.Log.Info("Cluster works again", "cluster", j.status.Name)
	j.status.State, j.status.Err = Ready, nil
	st := j.status
	r.mu.Unlock()
	r.opts.Notify(st)
}

func (r *Provisioner) run(ctx context.Context, j *job, spec v1alpha1.ClusterTemplateSpec, in AddonInputs) {
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
	r.mu.Lock()
	labels := maps.Clone(j.status.Labels)
	r.mu.Unlock()
	opts := lifecycle.CreateOptions{
		Wait:        r.opts.Wait,
		Labels:      labels,
		OnAPIUsable: func() { provisioned = r.opts.Now() },
		Addons: lifecycle.AddonOptions{
			Sources: addons.Sources{ServerMode: true, Reader: r.opts.Reader, Namespace: in.Namespace, PlainHTTP: spec.Network.InsecureRegistries},
			Labels:  in.Labels,
			OnPhase: func(ev addons.PhaseEvent) { r.addonPhase(j, ev) },
		},
	}
	start := r.opts.Now()
	var c *provider.Cluster
	var err error
	existing, gerr := r.p.Get(ctx, name)
	adopted := gerr == nil
	switch {
	case adopted && existing.Labels[LabelAddons] == AddonsPending:
		// Its create never finished; the owner rebuilds or releases it.
		log.Info("Not adopting a cluster whose addons were being installed")
		err = ErrAddonsInterrupted
	case adopted:
		log.Info("Adopting cluster", "phase", existing.Phase)
		if rs, ok := r.p.(provider.Restarter); ok && existing.Phase == provider.PhaseBroken {
			// Its processes are gone (a host restart, or they were killed
			// with the server): start it again on its own data, with the
			// certificates its kubeconfig Secret holds.
			log.Info("Restarting cluster on its data", "reason", existing.Message)
			if rerr := rs.Restart(ctx, name); rerr != nil {
				log.Error(rerr, "Restarting cluster")
			}
		}
		failpoint.Inject(failpoint.ProvisionAdopting)
		// A cluster that does not become usable again is Failed and kept:
		// its owner deletes it.
		c, err = r.opts.Adopt(ctx, r.p, name, opts)
	case errors.Is(gerr, provider.ErrNotFound):
		log.Info("Creating cluster")
		c, err = r.opts.Create(ctx, r.p, name, spec, opts)
	default:
		err = gerr
	}
	if err == nil && !adopted && len(spec.Addons) > 0 {
		err = r.markAddonsReady(ctx, j)
	}
	var kubeconfig []byte
	if err == nil {
		kubeconfig, err = r.p.Kubeconfig(ctx, name)
	}
	if err == nil {
		if !adopted {
			failpoint.Inject(failpoint.ProvisionAfterCreate)
			r.opts.Observe(r.opts.Now().Sub(start))
		}
		log.Info("Cluster ready", "seconds", r.opts.Now().Sub(start).Seconds())
	} else if !errors.Is(err, context.Canceled) {
		log.Error(err, "Cluster failed")
	}
	r.mu.Lock()
	j.status.Provisioned, j.status.Adopted = provisioned, adopted
	r.mu.Unlock()
	r.finish(j, c, kubeconfig, err)
}

func (r *Provisioner) finish(j *job, c *provider.Cluster, kubeconfig []byte, err error) {
	r.mu.Lock()
	if j.status.State == Deleting {
		r.mu.Unlock()
		return // a delete stopped it; Delete notifies
	}
	if err != nil {
		j.status.State, j.status.Err = Failed, err
		if j.status.Addons.Err == nil && (isAddonsError(err) || errors.Is(err, ErrAddonsInterrupted)) {
			j.status.Addons.Err = err
		}
		j.status.Addons.Current = ""
	} else {
		j.status.State, j.status.Cluster, j.status.Kubeconfig, j.status.ReadyAt = Ready, c, kubeconfig, r.opts.Now()
	}
	st := j.status
	r.mu.Unlock()
	r.opts.Notify(st)
}

// addonPhase records an addon phase's event on j and passes it on.
func (r *Provisioner) addonPhase(j *job, ev addons.PhaseEvent) {
	r.mu.Lock()
	a := &j.status.Addons
	switch ev.Kind {
	case addons.PhaseStarted:
		a.Current = ev.Phase
	case addons.PhaseReady:
		a.Current = ""
		a.Ready = append(slices.Clone(a.Ready), addons.PhaseResult{Name: ev.Phase, Duration: ev.Duration})
	case addons.PhaseFailed:
		a.Current, a.Err = "", ev.Err
	}
	st := j.status
	r.mu.Unlock()
	r.opts.Log.Info("Addon phase "+ev.Kind, "cluster", st.Name, "phase", ev.Phase, "seconds", ev.Duration.Seconds())
	r.opts.Notify(st)
	if r.opts.OnAddonPhase != nil {
		r.opts.OnAddonPhase(st, ev)
	}
}

// markAddonsReady records on the cluster, in the provider's labels and in
// memory, that its addons are installed, so that a restarted server adopts
// it rather than rebuilding it.
func (r *Provisioner) markAddonsReady(ctx context.Context, j *job) error {
	r.mu.Lock()
	labels := maps.Clone(j.status.Labels)
	r.mu.Unlock()
	labels[LabelAddons] = AddonsReady
	if l, ok := r.p.(provider.Labeler); ok {
		if err := l.SetLabels(ctx, j.status.Name, labels); err != nil {
			return fmt.Errorf("record that the addons are installed: %w", err)
		}
	}
	r.mu.Lock()
	j.status.Labels = labels
	r.mu.Unlock()
	return nil
}

// isAddonsError says whether a create failed in its addons: a phase, or
// reading and rendering them.
func isAddonsError(err error) bool {
	var pe *addons.PhaseError
	return errors.As(err, &pe) || errors.Is(err, lifecycle.ErrAddons)
}
