// Package testcluster is the command that asks the ephemera server for a cluster and waits for its kubeconfig.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/lease"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
)

type options struct {
	namespace     string
	pool          string
	template      string
	ttl           time.Duration
	maxLifetime   time.Duration
	priority      string
	labels        []string
	wait          time.Duration
	kubeconfigOut string
}

// NewCommand returns the create testcluster command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:     "testcluster [NAME] (--pool POOL | --template TEMPLATE)",
		Aliases: []string{"tc"},
		Short:   "Lease a cluster from the ephemera server and print its kubeconfig path",
		Long: `Lease a cluster from the ephemera server ('ephemera serve'): create a
TestCluster that claims a warm cluster from a ClusterPool (--pool, usually
ready at once) or builds a new one from a ClusterTemplate (--template), wait
until it is Ready, write its admin kubeconfig to a file (mode 0600) and print
ONLY that file's path on stdout, so that this works:

  export KUBECONFIG=$(ephemera create testcluster --pool ci)

Progress (queue position, provisioning) and a summary go to stderr. The
kubeconfig goes to --kubeconfig-out, by default
<state-dir>/kubeconfigs/<namespace>/<name>, which 'ephemera delete
testcluster NAME' removes (a --kubeconfig-out file is left alone).

Without NAME the server picks one: the pool or template name, a dash and
five random characters. With --wait 0 the command prints the TestCluster's
name and returns at once; 'ephemera get testclusters NAME' shows its phase.

The lease lasts --ttl after the cluster is bound, renewed by
'ephemera extend NAME' (a heartbeat), kept longer for debugging by
'ephemera hold NAME', and never past --max-lifetime after creation. When it
ends, the TestCluster and its cluster are deleted; delete them earlier with
'ephemera delete testcluster NAME'. Waiting claims are served by --priority
(High, then Normal, then Low), first come first served within a class.

If the TestCluster fails, its error is reported; if --wait runs out or the
command is interrupted, it is kept (it keeps its place in the queue) and the
command says how to check on it or delete it.`,
		Example: `  # In a CI job: lease a warm cluster, use it, give it back.
  export KUBECONFIG=$(ephemera create testcluster --pool ci --ttl 30m \
      --label repo=app --label pr=1234)
  kubectl get nodes

  # A new cluster from a template, named, high priority, kubeconfig where you want it.
  ephemera create testcluster e2e-big --template big --priority High \
      --kubeconfig-out ./kubeconfig

  # Fire and forget; check later.
  ephemera create testcluster --pool ci --wait 0
  ephemera get testclusters`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			tc, err := newTestCluster(name, opts)
			if err != nil {
				return err
			}
			return run(cmd.Context(), e, opts, tc)
		},
	}
	object.AddNamespaceFlag(cmd.Flags(), &opts.namespace)
	cmd.Flags().StringVar(&opts.pool, "pool", "", "ClusterPool to claim a warm cluster from (exclusive with --template)")
	cmd.Flags().StringVar(&opts.template, "template", "", "ClusterTemplate to build a new cluster from (exclusive with --pool)")
	cmd.Flags().DurationVar(&opts.ttl, "ttl", 0, "lease length after bind or the last heartbeat, like 30m (default 1h on the server)")
	cmd.Flags().DurationVar(&opts.maxLifetime, "max-lifetime", 0, "hard end of the lease after creation, holds included, like 72h (default 72h on the server)")
	cmd.Flags().StringVar(&opts.priority, "priority", "", "order among waiting claims: High, Normal or Low (default Normal)")
	cmd.Flags().StringSliceVar(&opts.labels, "label", nil, "label KEY=VALUE on the TestCluster, like repo=app (repeat, or comma-separate)")
	cmd.Flags().DurationVar(&opts.wait, "wait", 10*time.Minute, "how long to wait until the cluster is Ready (0: print the name and return at once)")
	cmd.Flags().StringVar(&opts.kubeconfigOut, "kubeconfig-out", "", "file to write the kubeconfig to (default <state-dir>/kubeconfigs/<namespace>/<name>)")
	return cmd
}

// newTestCluster builds the TestCluster the flags ask for, or says which flag
// is wrong and how to fix it.
func newTestCluster(name string, opts *options) (*v1alpha1.TestCluster, error) {
	if err := object.ValidateNamespace(opts.namespace); err != nil {
		return nil, err
	}
	tc := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: opts.namespace, Name: name}}
	if name != "" {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("invalid TestCluster name %q: %s", name, strings.Join(errs, "; "))
		}
	}
	switch {
	case opts.pool != "" && opts.template != "":
		return nil, errors.New("--pool and --template exclude each other: claim a warm cluster from a pool, or build a new one from a template")
	case opts.pool == "" && opts.template == "":
		return nil, errors.New("say where the cluster comes from: --pool POOL (a warm cluster from a ClusterPool) or --template TEMPLATE (a new cluster from a ClusterTemplate); list them with 'ephemera get pools' and 'ephemera get templates'")
	case opts.pool != "":
		if err := validateRef("--pool", opts.pool); err != nil {
			return nil, err
		}
		tc.Spec.PoolRef = opts.pool
	default:
		if err := validateRef("--template", opts.template); err != nil {
			return nil, err
		}
		tc.Spec.TemplateRef = opts.template
	}
	if name == "" {
		tc.GenerateName = tc.Spec.PoolRef + tc.Spec.TemplateRef + "-"
	}
	var err error
	if tc.Spec.TTL, err = leaseDuration("--ttl", opts.ttl); err != nil {
		return nil, err
	}
	if tc.Spec.MaxLifetime, err = leaseDuration("--max-lifetime", opts.maxLifetime); err != nil {
		return nil, err
	}
	if tc.Spec.Priority, err = parsePriority(opts.priority); err != nil {
		return nil, err
	}
	if tc.Labels, err = parseLabels(opts.labels); err != nil {
		return nil, err
	}
	switch {
	case opts.wait < 0:
		return nil, fmt.Errorf("--wait %s: must not be negative", opts.wait)
	case opts.wait == 0 && opts.kubeconfigOut != "":
		return nil, errors.New("--kubeconfig-out needs --wait above 0: the kubeconfig exists only once the cluster is Ready")
	}
	return tc, nil
}

func validateRef(flag, ref string) error {
	errs := validation.IsDNS1123Subdomain(ref)
	if len(ref) > 63 {
		errs = append(errs, "must be no more than 63 characters")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s %q: %s", flag, ref, strings.Join(errs, "; "))
	}
	return nil
}

// leaseDuration turns a duration flag into a spec field: unset (nil) when 0.
func leaseDuration(flag string, d time.Duration) (*metav1.Duration, error) {
	switch {
	case d == 0:
		return nil, nil
	case d < time.Second:
		return nil, fmt.Errorf("%s %s: must be at least 1s, like 30m or 2h", flag, d)
	}
	return &metav1.Duration{Duration: d}, nil
}

// parsePriority accepts High, Normal or Low in any case; empty leaves the
// server's default.
func parsePriority(s string) (v1alpha1.Priority, error) {
	for _, p := range []v1alpha1.Priority{v1alpha1.PriorityHigh, v1alpha1.PriorityNormal, v1alpha1.PriorityLow} {
		if strings.EqualFold(s, string(p)) {
			return p, nil
		}
	}
	if s == "" {
		return "", nil
	}
	return "", fmt.Errorf("--priority %q: use High, Normal or Low", s)
}

// parseLabels turns KEY=VALUE pairs into labels, checking keys and values as
// the API server would.
func parseLabels(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	labels := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE, like repo=app", kv)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("--label %q: invalid key %q: %s", kv, k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("--label %q: invalid value %q: %s", kv, v, strings.Join(errs, "; "))
		}
		if old, dup := labels[k]; dup && old != v {
			return nil, fmt.Errorf("--label %q: key %q given twice, with values %q and %q", kv, k, old, v)
		}
		labels[k] = v
	}
	return labels, nil
}

func run(ctx context.Context, e *env.Env, opts *options, tc *v1alpha1.TestCluster) error {
	c, err := e.ServerClient()
	if err != nil {
		return err
	}
	started := time.Now()
	if err := c.Create(ctx, tc); err != nil {
		return fmt.Errorf("create TestCluster %s: %w", displayName(tc), err)
	}
	key := client.ObjectKeyFromObject(tc)
	if opts.wait == 0 {
		fmt.Fprintln(e.Out, tc.Name)
		fmt.Fprintf(e.ErrOut, "Created TestCluster %s; check on it with 'ephemera get testclusters %s -n %s'\n", key, tc.Name, tc.Namespace)
		return nil
	}
	kubeconfig, err := lease.WaitReady(ctx, c, tc, opts.wait, e.Progress())
	if err != nil {
		return err
	}
	path := opts.kubeconfigOut
	if path == "" {
		path = e.ServerLayout().LeaseKubeconfig(tc.Namespace, tc.Name)
	}
	if path, err = lease.WriteKubeconfig(path, kubeconfig); err != nil {
		return err
	}
	fmt.Fprintln(e.Out, path)
	fmt.Fprintln(e.ErrOut, lease.ReadyLine(tc, time.Since(started), time.Now()))
	return nil
}

// displayName is namespace/name, or namespace/generateName* before the
// server has picked a name.
func displayName(tc *v1alpha1.TestCluster) string {
	if tc.Name == "" {
		return tc.Namespace + "/" + tc.GenerateName + "*"
	}
	return tc.Namespace + "/" + tc.Name
}
