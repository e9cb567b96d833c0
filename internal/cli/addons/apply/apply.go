// Package apply is the command that installs a template's addon phases into
// an existing cluster.
package apply

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/cli/clusterfile"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/progress"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

type options struct {
	file    string
	cluster string
	labels  []string
}

// deps are what run installs with; tests replace them.
type deps struct {
	validate func(ctx context.Context, phases []v1alpha1.AddonPhase, opts lifecycle.AddonOptions, rep progress.Reporter) error
	install  func(ctx context.Context, p provider.Provider, name string, phases []v1alpha1.AddonPhase, opts lifecycle.AddonOptions, rep progress.Reporter) (addons.Result, error)
}

// NewCommand returns the addons apply command.
func NewCommand(e *env.Env) *cobra.Command {
	return newCommand(e, deps{validate: lifecycle.ValidateAddons, install: lifecycle.InstallAddons})
}

func newCommand(e *env.Env, d deps) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "apply -f TEMPLATE --cluster NAME",
		Short: "Install a ClusterTemplate's addon phases into an existing cluster",
		Long: `Install the addons of a ClusterTemplate (its spec.addons) into a cluster that
exists already, as 'ephemera create cluster -f' does after creating one: the
phases in order, the manifests and charts of each phase at once, and each
phase waited on until what it installed is ready (CRDs Established,
Deployments, StatefulSets and DaemonSets rolled out, Jobs complete,
APIServices Available, LoadBalancer Services with an address) before the
next starts, within the phase's timeout (default 10m).

Everything the file names is checked first (paths exist, YAML and values
parse, templates parse, local charts load), so a bad file changes nothing.
Go templates in manifests and values see the cluster's facts:
{{ .Name }}, {{ .Ingress.Address }}, {{ .Ingress.Domain }},
{{ .KubernetesVersion }} and {{ .Labels.KEY }}: the labels recorded with the
cluster ('create cluster --label'), overridden by --label here. An unknown
key is an error.

Applying again changes nothing: manifests are applied server-side (field
manager "ephemera") and a chart is upgraded only when its version or values
changed, so Helm release revisions stay. The releases are ordinary Helm
releases: 'helm list -A' shows them, and helm can upgrade or uninstall them.
Relative paths in the file are relative to the file's directory (to the
working directory with -f -). See docs/addons.md.`,
		Example: `  ephemera addons apply -f template.yaml --cluster demo
  ephemera addons apply -f template.yaml --cluster pr-42 --label pr=42   # {{ .Labels.pr }}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e, opts, d)
		},
	}
	cmd.Flags().StringVarP(&opts.file, "file", "f", "", "ClusterTemplate YAML file whose spec.addons to install (- for stdin)")
	cmd.Flags().StringVar(&opts.cluster, "cluster", "", "cluster to install the addons into ('ephemera get clusters' lists them)")
	cmd.Flags().StringSliceVar(&opts.labels, "label", nil, "label KEY=VALUE that templates read as {{ .Labels.KEY }}, over those recorded with the cluster (repeat, or comma-separate)")
	return cmd
}

// validate checks the flags.
func validate(opts *options) error {
	switch {
	case opts.file == "" && opts.cluster == "":
		return errors.New("-f and --cluster are required: ephemera addons apply -f TEMPLATE --cluster NAME")
	case opts.file == "":
		return errors.New("-f is required: the ClusterTemplate file whose spec.addons to install")
	case opts.cluster == "":
		return errors.New("--cluster is required: the cluster to install the addons into ('ephemera get clusters' lists them)")
	}
	return nil
}

func run(ctx context.Context, e *env.Env, opts *options, d deps) error {
	if err := validate(opts); err != nil {
		return err
	}
	flagLabels, err := clusterfile.ParseLabels(opts.labels)
	if err != nil {
		return err
	}
	t, err := clusterfile.Read(opts.file, e.In)
	if err != nil {
		return err
	}
	if len(t.Spec.Addons) == 0 {
		return fmt.Errorf("%s has no spec.addons: nothing to install (see 'ephemera addons apply --help')", opts.file)
	}
	dir, err := clusterfile.Dir(opts.file)
	if err != nil {
		return err
	}
	p, c, err := findCluster(ctx, e, opts.cluster)
	if err != nil {
		return err
	}
	ao := lifecycle.AddonOptions{Sources: addons.Sources{Dir: dir, PlainHTTP: t.Spec.Network.InsecureRegistries}, Labels: factLabels(c.Labels, flagLabels)}
	rep := e.Progress()
	if err := d.validate(ctx, t.Spec.Addons, ao, rep); err != nil {
		return fmt.Errorf("apply addons to cluster %q: %w", opts.cluster, err)
	}
	started := time.Now()
	res, err := d.install(ctx, p, opts.cluster, t.Spec.Addons, ao, rep)
	if err != nil {
		return fmt.Errorf("apply addons to cluster %q: %w", opts.cluster, err)
	}
	fmt.Fprintf(e.ErrOut, "The addons of cluster %q are ready after %s (%s).\n", opts.cluster, time.Since(started).Round(10*time.Millisecond), lifecycle.Durations(res))
	return nil
}

// factLabels are the labels templates see: those recorded with the
// cluster, but ephemera's own, overridden by --label.
func factLabels(recorded, flags map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range recorded {
		if !strings.HasPrefix(k, clusterfile.ReservedLabelPrefix) {
			out[k] = v
		}
	}
	maps.Copy(out, flags)
	return out
}

// findCluster returns the cluster named name and its provider.
func findCluster(ctx context.Context, e *env.Env, name string) (provider.Provider, *provider.Cluster, error) {
	for _, p := range e.Providers().All() {
		c, err := p.Get(ctx, name)
		if errors.Is(err, provider.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		return p, c, nil
	}
	return nil, nil, fmt.Errorf("apply addons to cluster %q ('ephemera get clusters' lists the clusters): %w", name, provider.ErrNotFound)
}
