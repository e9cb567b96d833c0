package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/progress"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// DefaultAPITimeout bounds the wait for a new cluster's API to answer.
const DefaultAPITimeout = 2 * time.Minute

// CreateOptions tune Create.
type CreateOptions struct {
	// Wait bounds the wait, after the API answers, for every component to
	// be healthy, every node Ready and the default service account to
	// exist. Zero returns as soon as the API answers.
	Wait time.Duration
	// APITimeout bounds the wait for the API; DefaultAPITimeout when zero.
	APITimeout time.Duration
	// Retain keeps a cluster whose create failed, for debugging; otherwise
	// it is deleted.
	Retain bool
	// Progress receives the steps.
	Progress progress.Reporter
	// Labels are recorded with the cluster (see provider.CreateOptions).
	Labels map[string]string
	// OnAPIUsable, when set, is called once the cluster's API answers.
	OnAPIUsable func()
	// Addons say where the spec's addons come from and what their
	// templates see; see Create.
	Addons AddonOptions
}

// ErrNotReady is returned when a cluster does not become ready in time.
var ErrNotReady = errors.New("cluster not ready")

// Create creates a cluster and waits until it is usable. When the spec has
// addons, it checks them before creating anything (ValidateAddons) and
// installs them once the cluster is ready (see InstallAddons): the cluster
// is usable only after its last phase is ready. If anything fails after the
// provider started creating it, including an addon phase and ctx being
// cancelled by Ctrl-C, the cluster is deleted unless opts.Retain is set, so
// nothing is left behind.
func Create(ctx context.Context, p provider.Provider, name string, spec v1alpha1.ClusterTemplateSpec, opts CreateOptions) (*provider.Cluster, error) {
	rep := opts.Progress
	if rep == nil {
		rep = progress.Discard
	}
	if opts.APITimeout == 0 {
		opts.APITimeout = DefaultAPITimeout
	}
	if err := ValidateAddons(ctx, spec.Addons, opts.Addons, rep); err != nil {
		return nil, err
	}
	rep.Start(fmt.Sprintf("Preparing cluster %q (%s)", name, describe(spec)))
	if err := p.Create(ctx, name, spec, provider.CreateOptions{Labels: opts.Labels}); err != nil {
		rep.End(false)
		if ctx.Err() != nil {
			// Providers remove what a failed Create started.
			return nil, fmt.Errorf("interrupted while preparing the cluster (the half-created cluster was deleted): %w", err)
		}
		return nil, err
	}
	c, err := waitReady(ctx, p, name, spec, opts, rep)
	if err == nil && len(spec.Addons) > 0 {
		_, err = installAddons(ctx, p, c, spec.Addons, opts.Addons, rep)
		if err == nil {
			// The addons may have given the cluster its ingress address.
			c, err = p.Get(ctx, name)
		}
	}
	if err == nil {
		return c, nil
	}
	rep.End(false)
	if opts.Retain {
		return nil, &CreateError{Name: name, Err: err, Retained: true}
	}
	// ctx may be cancelled already; the cleanup gets its own time.
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if derr := p.Delete(cleanup, name); derr != nil {
		return nil, &CreateError{Name: name, Err: err, DeleteErr: derr}
	}
	return nil, &CreateError{Name: name, Err: err, Deleted: true}
}

// CreateError is returned by Create when a cluster the provider started
// did not become usable: Err says why, the other fields what became of the
// cluster. Its message says only what happened; callers add their advice
// (how to keep or remove the cluster) with errors.As.
type CreateError struct {
	// Name is the cluster's name.
	Name string
	// Err is why the cluster is not usable.
	Err error
	// Retained says the cluster was kept (CreateOptions.Retain).
	Retained bool
	// Deleted says the half-created cluster was deleted.
	Deleted bool
	// DeleteErr is why deleting the half-created cluster failed; the
	// cluster may still exist.
	DeleteErr error
}

func (e *CreateError) Error() string {
	switch {
	case e.Retained:
		return fmt.Sprintf("%v\n(the cluster was kept)", e.Err)
	case e.DeleteErr != nil:
		return fmt.Sprintf("%v\n(deleting the half-created cluster failed too: %v)", e.Err, e.DeleteErr)
	case e.Deleted:
		return fmt.Sprintf("%v\n(the half-created cluster was deleted)", e.Err)
	}
	return e.Err.Error()
}

// Unwrap returns Err. DeleteErr is not in the chain: a caller asking
// errors.Is(err, context.Canceled) means the create, not the cleanup.
func (e *CreateError) Unwrap() error { return e.Err }

// Adopt waits until an existing cluster is usable, as Create does after
// starting one, for example a cluster a server finds again after a
// restart. Unlike Create it never deletes the cluster.
func Adopt(ctx context.Context, p provider.Provider, name string, opts CreateOptions) (*provider.Cluster, error) {
	rep := opts.Progress
	if rep == nil {
		rep = progress.Discard
	}
	if opts.APITimeout == 0 {
		opts.APITimeout = DefaultAPITimeout
	}
	c, err := p.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	spec := v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: &c.RealNodes, Simulated: &c.SimulatedNodes}}
	c, err = waitReady(ctx, p, name, spec, opts, rep)
	if err != nil {
		rep.End(false)
	}
	return c, err
}

func waitReady(ctx context.Context, p provider.Provider, name string, spec v1alpha1.ClusterTemplateSpec, opts CreateOptions, rep progress.Reporter) (*provider.Cluster, error) {
	kubeconfig, err := p.Kubeconfig(ctx, name)
	if err != nil {
		return nil, err
	}
	probe, err := newProbe(kubeconfig)
	if err != nil {
		return nil, err
	}
	rep.Start("Starting the control plane (etcd, kube-apiserver)")
	if err := poll(ctx, opts.APITimeout, func(ctx context.Context) (bool, string, error) {
		c, err := p.Get(ctx, name)
		if err != nil {
			return false, "", err
		}
		if err := terminal(c); err != nil {
			return false, "", err
		}
		if err := probe.apiUsable(ctx); err != nil {
			return false, "kube-apiserver: " + err.Error(), nil
		}
		return true, "", nil
	}, rep); err != nil {
		return nil, notReady(ctx, p, name, err)
	}
	if opts.OnAPIUsable != nil {
		opts.OnAPIUsable()
	}
	if opts.Wait <= 0 {
		rep.End(true)
		return p.Get(ctx, name)
	}
	what := fmt.Sprintf("%d nodes Ready", spec.Nodes.RealCount()+spec.Nodes.SimulatedCount())
	if spec.Nodes.RealCount() > 0 {
		what += ", cluster DNS"
	}
	rep.Start("Waiting for the controllers, " + what + " and the default service account")
	var cluster *provider.Cluster
	if err := poll(ctx, opts.Wait, func(ctx context.Context) (bool, string, error) {
		c, err := p.Get(ctx, name)
		if err != nil {
			return false, "", err
		}
		if err := terminal(c); err != nil {
			return false, "", err
		}
		if c.Phase == provider.PhaseCreating {
			return false, "components: " + c.Message, nil
		}
		if msg, err := probe.workloadsReady(ctx, int(c.RealNodes+c.SimulatedNodes)); err != nil || msg != "" {
			return false, msg, err
		}
		cluster = c
		return true, "", nil
	}, rep); err != nil {
		return nil, notReady(ctx, p, name, err)
	}
	rep.End(true)
	return cluster, nil
}

// pollInterval is how often waits re-check; short, because every check is
// a local file read or one request to a local API server.
const pollInterval = 25 * time.Millisecond

// poll calls check until it reports done, returns an error, the timeout
// passes or ctx ends. The last "waiting for" message goes to the progress
// reporter and into the timeout error.
func poll(ctx context.Context, timeout time.Duration, check func(context.Context) (bool, string, error), rep progress.Reporter) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		done, msg, err := check(ctx)
		if err != nil || done {
			return err
		}
		if msg != last && msg != "" {
			rep.Update(msg)
			last = msg
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s: waiting for %s", ErrNotReady, timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s: %w", last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// terminal returns an error for the phases a wait cannot end well from.
func terminal(c *provider.Cluster) error {
	switch c.Phase {
	case provider.PhaseBroken:
		return fmt.Errorf("%w: cluster %q is broken: %s", ErrNotReady, c.Name, c.Message)
	case provider.PhaseDeleting:
		return fmt.Errorf("%w: cluster %q is being deleted by another command", ErrNotReady, c.Name)
	}
	return nil
}

// notReady adds what the provider knows about the components that are not
// ready, with the end of their logs, to a wait error.
func notReady(ctx context.Context, p provider.Provider, name string, err error) error {
	c, gerr := p.Get(context.WithoutCancel(ctx), name)
	if gerr != nil {
		return err
	}
	var b strings.Builder
	for _, comp := range c.Components {
		if comp.Ready {
			continue
		}
		fmt.Fprintf(&b, "\n%s is not ready: %s", comp.Name, comp.Message)
		if comp.Log != "" {
			if tail := logTail(comp.Log, logTailLines); tail != "" {
				fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", comp.Log, tail)
			}
		}
	}
	if b.Len() == 0 {
		return err
	}
	return fmt.Errorf("%w%s", err, b.String())
}

func describe(spec v1alpha1.ClusterTemplateSpec) string {
	v := spec.KubernetesVersion
	if v == "" {
		v = "default version"
	}
	return fmt.Sprintf("Kubernetes %s, %s", v, NodeCounts(spec.Nodes.RealCount(), spec.Nodes.SimulatedCount()))
}

// NodeCounts describes a cluster's nodes, like "1 real and 3 simulated
// nodes".
func NodeCounts(realNodes, simNodes int32) string {
	switch {
	case realNodes > 0 && simNodes > 0:
		return fmt.Sprintf("%d real and %d simulated nodes", realNodes, simNodes)
	case realNodes > 0:
		return fmt.Sprintf("%d real node", realNodes)
	}
	return fmt.Sprintf("%d simulated nodes", simNodes)
}
