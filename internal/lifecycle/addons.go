package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/progress"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// AddonOptions say where a template's addons come from and what their Go
// templates see besides the cluster's own facts.
type AddonOptions struct {
	// Sources resolves what the phases name: paths relative to Sources.Dir
	// in-job; ConfigMaps and Secrets of Sources.Namespace in server mode.
	Sources addons.Sources
	// Labels are what templates see as {{ .Labels.KEY }}: the TestCluster's
	// labels in server mode, the --label flags in-job.
	Labels map[string]string
	// OnPhase, when set, is called as each phase starts, becomes ready or
	// fails, after the progress reporter is told.
	OnPhase func(addons.PhaseEvent)
}

// ErrAddons marks the errors of reading, checking and rendering a
// template's addons, before any phase is applied; a failed phase is an
// *addons.PhaseError instead.
var ErrAddons = errors.New("addons")

// ErrClusterNotRunning is returned by InstallAddons for a cluster that is
// not Running.
var ErrClusterNotRunning = errors.New("cluster is not running")

// Facts are what addon templates see of the cluster c: its name, version and
// ingress, and labels.
func Facts(c *provider.Cluster, labels map[string]string) addons.Facts {
	f := addons.Facts{Name: c.Name, KubernetesVersion: c.KubernetesVersion, Labels: maps.Clone(labels)}
	if f.Labels == nil {
		f.Labels = map[string]string{}
	}
	if c.Ingress != nil {
		f.Ingress = addons.Ingress{Address: c.Ingress.Address, Domain: c.Ingress.Domain}
	}
	return f
}

// ValidateAddons checks what the phases name before any cluster exists:
// paths exist, YAML and values parse, templates parse, local charts load.
func ValidateAddons(ctx context.Context, phases []v1alpha1.AddonPhase, opts AddonOptions, rep progress.Reporter) error {
	if len(phases) == 0 {
		return nil
	}
	if rep == nil {
		rep = progress.Discard
	}
	rep.Start(fmt.Sprintf("Checking the addons (%s)", PhaseNames(phases)))
	// The labels are known before the cluster exists (--label in-job,
	// the TestCluster's or pool's in server mode): a missing one is
	// refused before anything is created.
	labels := opts.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	if err := addons.Validate(ctx, phases, opts.Sources, labels); err != nil {
		rep.End(false)
		return fmt.Errorf("%w: %w", ErrAddons, err)
	}
	rep.End(true)
	return nil
}

// InstallAddons installs the phases into the existing, Running cluster name:
// it renders them with the cluster's facts, then applies them in order,
// each phase waited on until ready, reporting each phase as a step with its
// duration. Installing the same phases again changes nothing. A failed
// phase's error is an *addons.PhaseError.
func InstallAddons(ctx context.Context, p provider.Provider, name string, phases []v1alpha1.AddonPhase, opts AddonOptions, rep progress.Reporter) (addons.Result, error) {
	if rep == nil {
		rep = progress.Discard
	}
	c, err := p.Get(ctx, name)
	if err != nil {
		return addons.Result{}, err
	}
	if c.Phase != provider.PhaseRunning {
		msg := ""
		if c.Message != "" {
			msg = ": " + c.Message
		}
		return addons.Result{}, fmt.Errorf("%w: cluster %q is %s%s", ErrClusterNotRunning, name, c.Phase, msg)
	}
	return installAddons(ctx, p, c, phases, opts, rep)
}

func installAddons(ctx context.Context, p provider.Provider, c *provider.Cluster, phases []v1alpha1.AddonPhase, opts AddonOptions, rep progress.Reporter) (addons.Result, error) {
	kubeconfig, err := p.Kubeconfig(ctx, c.Name)
	if err != nil {
		return addons.Result{}, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return addons.Result{}, fmt.Errorf("read kubeconfig of cluster %q: %w", c.Name, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	rep.Start(fmt.Sprintf("Rendering the addons with the facts of cluster %q", c.Name))
	plan, err := addons.Prepare(ctx, phases, Facts(c, opts.Labels), opts.Sources)
	if err != nil {
		rep.End(false)
		return addons.Result{}, fmt.Errorf("%w: %w", ErrAddons, err)
	}
	rep.End(true)
	return addons.Apply(ctx, cfg, plan, addons.ApplyOptions{Progress: phaseProgress(phases, rep, opts.OnPhase)})
}

// phaseProgress turns the engine's phase events into steps of rep, one per
// phase ("Installing addons: phase apps (2 of 3)"), which the reporter ends
// with the phase's duration, and passes them on to then.
func phaseProgress(phases []v1alpha1.AddonPhase, rep progress.Reporter, then func(addons.PhaseEvent)) func(addons.PhaseEvent) {
	return func(ev addons.PhaseEvent) {
		switch ev.Kind {
		case addons.PhaseStarted:
			rep.Start(PhaseStep(phases, ev.Phase))
		case addons.PhaseReady:
			rep.End(true)
		case addons.PhaseFailed:
			rep.End(false)
		}
		if then != nil {
			then(ev)
		}
	}
}

// PhaseStep describes the phase named phase of phases as a progress step:
// "Installing addons: phase apps (2 of 3: 1 manifest, 2 charts)".
func PhaseStep(phases []v1alpha1.AddonPhase, phase string) string {
	for i, ph := range phases {
		if ph.Name == phase {
			return fmt.Sprintf("Installing addons: phase %s (%d of %d: %s)", phase, i+1, len(phases), items(ph))
		}
	}
	return "Installing addons: phase " + phase
}

func items(ph v1alpha1.AddonPhase) string {
	var parts []string
	if n := len(ph.Manifests); n > 0 {
		parts = append(parts, plural(n, "manifest source"))
	}
	if n := len(ph.Charts); n > 0 {
		names := make([]string, 0, n)
		for _, c := range ph.Charts {
			names = append(names, c.Name)
		}
		parts = append(parts, plural(n, "chart")+" "+strings.Join(names, ", "))
	}
	if len(parts) == 0 {
		return "nothing to install"
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// PhaseNames lists the phases' names, like "operators, apps".
func PhaseNames(phases []v1alpha1.AddonPhase) string {
	names := make([]string, 0, len(phases))
	for _, ph := range phases {
		names = append(names, ph.Name)
	}
	return strings.Join(names, ", ")
}

// Durations lists how long each phase of r took, like "operators 12.3s,
// apps 40s".
func Durations(r addons.Result) string {
	parts := make([]string, 0, len(r.Phases))
	for _, ph := range r.Phases {
		parts = append(parts, fmt.Sprintf("%s %s", ph.Name, roundDuration(ph.Duration)))
	}
	return strings.Join(parts, ", ")
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Second)
}
