// Package run is the command that runs a test command against a fresh
// cluster and gives the cluster back afterwards.
package run

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/lease"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/runner"
)

// On-failure policies.
const (
	onFailureDelete = "delete"
	onFailureHold   = "hold"
)

// exitTimeout is the exit status of a run its --timeout ended, as timeout(1).
const exitTimeout = 124

type options struct {
	pool, template string
	namespace      string
	realNodes      int32
	simNodes       int32
	version        string
	artifacts      string
	timeout        time.Duration
	onFailure      string
	holdFor        time.Duration
	wait           time.Duration
}

// NewCommand returns the run command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]",
		Short: "Run a test command against a cluster of its own, then give the cluster back",
		Long: `Run a test command (go test, a shell script, helm test, pytest...) against a
cluster of its own, and give the cluster back when it ends:

  - with --pool or --template, lease the cluster from the ephemera server
    (a TestCluster; see 'ephemera create testcluster --help');
  - without them, create a local cluster here (in-job mode, no server):
    --real-nodes and --simulated-nodes as for 'ephemera create cluster'.

The command runs with KUBECONFIG set, and EPHEMERA_CLUSTER_NAME,
EPHEMERA_CLUSTER_ENDPOINT, EPHEMERA_KUBERNETES_VERSION, EPHEMERA_ARTIFACTS
(the --artifacts dir), EPHEMERA_INGRESS_ADDRESS and EPHEMERA_INGRESS_DOMAIN
(where LoadBalancer Services are reached; empty without a real node). Its output goes to the terminal and to
<artifacts>/test.log. JUnit XML files it writes under the artefact dir are read
afterwards and summed up: tests, failures, errors, skipped, the failing tests.

The run passes when the command exits 0 and no JUnit test case failed. ephemera
exits with the command's status (1 when only JUnit reports a failure, 124 when
--timeout ended it). Then the cluster is deleted; with --on-failure hold a
failed run keeps it for debugging: a leased one for --hold-for (the server ends
the hold), a local one until 'ephemera delete cluster NAME'.`,
		Example: `  # In-job: a local cluster with one real node, go test against it.
  ephemera run -- go test ./e2e/... -json

  # From the server's warm pool; keep the cluster 2h if a test fails.
  ephemera run --pool ci --on-failure hold --hold-for 2h -- ./hack/e2e.sh

  # Write JUnit where ephemera reads it.
  ephemera run --simulated-nodes 3 -- sh -c 'gotestsum --junitfile "$EPHEMERA_ARTIFACTS/junit.xml" ./...'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return errors.New("put the test command after --, like 'ephemera run --pool ci -- go test ./...'")
			}
			if err := validate(opts, cmd.Flags().Changed("real-nodes"), cmd.Flags().Changed("simulated-nodes")); err != nil {
				return err
			}
			return run(cmd.Context(), e, opts, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.pool, "pool", "", "lease a warm cluster of this ClusterPool from the ephemera server")
	f.StringVar(&opts.template, "template", "", "lease a new cluster of this ClusterTemplate from the ephemera server")
	f.StringVarP(&opts.namespace, "namespace", "n", "default", "namespace of the pool or template on the server")
	f.Int32Var(&opts.realNodes, "real-nodes", 1, "local mode: real nodes (0 or 1)")
	f.Int32Var(&opts.simNodes, "simulated-nodes", 0, "local mode: simulated nodes (0 to 1000)")
	f.StringVar(&opts.version, "kubernetes-version", "", "local mode: Kubernetes version (default: the newest installed by ephemera)")
	f.StringVar(&opts.artifacts, "artifacts", "artifacts", "dir for the log and the JUnit reports (EPHEMERA_ARTIFACTS)")
	f.DurationVar(&opts.timeout, "timeout", v1alpha1.DefaultRunTimeout, "stop the test command after this long")
	f.StringVar(&opts.onFailure, "on-failure", onFailureDelete, "what to do with the cluster when the run fails: delete or hold")
	f.DurationVar(&opts.holdFor, "hold-for", v1alpha1.DefaultHoldFor, "with --on-failure hold: how long the server keeps a leased cluster")
	f.DurationVar(&opts.wait, "wait", 10*time.Minute, "how long to wait for the cluster")
	return cmd
}

func validate(opts *options, realSet, simSet bool) error {
	if opts.pool != "" && opts.template != "" {
		return errors.New("--pool and --template are exclusive: lease from a pool or build from a template")
	}
	if (opts.pool != "" || opts.template != "") && (realSet || simSet || opts.version != "") {
		return errors.New("--real-nodes, --simulated-nodes and --kubernetes-version are for local clusters; the server's pool or template decides them")
	}
	if opts.onFailure != onFailureDelete && opts.onFailure != onFailureHold {
		return fmt.Errorf("--on-failure %q: want delete or hold", opts.onFailure)
	}
	if opts.timeout <= 0 || opts.holdFor <= 0 || opts.wait <= 0 {
		return errors.New("--timeout, --hold-for and --wait must be positive, like 30m")
	}
	if simSet && !realSet {
		opts.realNodes = 0 // like create cluster: simulated nodes only unless asked
	}
	return nil
}

// acquired is a cluster the run holds, with how to give it back.
type acquired struct {
	cluster runner.Cluster
	release func(ctx context.Context) error
	hold    func(ctx context.Context) (string, error)
}

func run(ctx context.Context, e *env.Env, opts *options, argv []string) error {
	artifacts, err := filepath.Abs(opts.artifacts)
	if err != nil {
		return err
	}
	var a *acquired
	if opts.pool != "" || opts.template != "" {
		a, err = leaseCluster(ctx, e, opts)
	} else {
		a, err = localCluster(ctx, e, opts)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.ErrOut, " • Running %s against %s (artefacts in %s)\n", strings.Join(argv, " "), a.cluster.Name, artifacts)
	out, runErr := runner.LocalRun{Argv: argv, Cluster: a.cluster, Artifacts: artifacts, Timeout: opts.timeout, Out: e.ErrOut}.Run(ctx)
	// Giving the cluster back must happen even after Ctrl-C.
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	failed := runErr != nil || !out.Passed()
	fmt.Fprint(e.ErrOut, summary(out, runErr))
	if failed && opts.onFailure == onFailureHold && ctx.Err() == nil {
		msg, err := a.hold(cleanup)
		if err != nil {
			return errors.Join(runErr, fmt.Errorf("hold the cluster: %w", err))
		}
		fmt.Fprintln(e.ErrOut, msg)
	} else if err := a.release(cleanup); err != nil {
		return errors.Join(runErr, fmt.Errorf("give the cluster back: %w", err))
	}
	switch {
	case runErr != nil:
		return runErr
	case out.TimedOut:
		return &env.ExitError{Code: exitTimeout, Err: fmt.Errorf("the test command did not finish within --timeout %s", opts.timeout)}
	case out.ExitCode != 0:
		return &env.ExitError{Code: out.ExitCode}
	case !out.Result.Passed():
		return &env.ExitError{Code: 1, Err: fmt.Errorf("JUnit reports %d failed and %d errored tests", out.Result.Failures, out.Result.Errors)}
	}
	return nil
}

// summary describes how the run went, for stderr.
func summary(out runner.Outcome, runErr error) string {
	var b strings.Builder
	verdict := "PASSED"
	if runErr != nil || !out.Passed() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, " • Run %s after %s: exit status %d", verdict, out.Duration.Round(time.Millisecond), out.ExitCode)
	if out.TimedOut {
		b.WriteString(" (timed out)")
	}
	if len(out.Result.Files) > 0 {
		fmt.Fprintf(&b, "; JUnit: %s", out.Result)
	} else {
		b.WriteString("; no JUnit reports")
	}
	if note := runner.TooLargeNote(out.Result.TooLarge); note != "" {
		b.WriteString("; " + note)
	}
	fmt.Fprintf(&b, "; log: %s\n", out.Log)
	for _, name := range out.Result.Failing {
		fmt.Fprintf(&b, "   FAIL %s\n", name)
	}
	return b.String()
}

// localCluster creates a local cluster for the run (in-job mode).
func localCluster(ctx context.Context, e *env.Env, opts *options) (*acquired, error) {
	spec := v1alpha1.ClusterTemplateSpec{
		KubernetesVersion: opts.version,
		Nodes:             v1alpha1.NodesSpec{Real: &opts.realNodes, Simulated: &opts.simNodes},
	}
	p, err := e.Providers().Get(string(spec.ProviderOrDefault()))
	if err != nil {
		return nil, err
	}
	name := "run-" + utilrand.String(5)
	c, err := lifecycle.Create(ctx, p, name, spec, lifecycle.CreateOptions{Wait: opts.wait, Progress: e.Progress()})
	if err != nil {
		return nil, err
	}
	return &acquired{
		cluster: clusterOf(name, c.Endpoint, c.KubernetesVersion, c.KubeconfigPath, c.Ingress),
		release: func(ctx context.Context) error { return lifecycle.Delete(ctx, p, name) },
		hold: func(context.Context) (string, error) {
			return fmt.Sprintf(" • Kept cluster %s for debugging (no server, so no hold time): export KUBECONFIG=%s; delete it with: ephemera delete cluster %s", name, c.KubeconfigPath, name), nil
		},
	}, nil
}

// leaseCluster leases a cluster from the ephemera server.
func leaseCluster(ctx context.Context, e *env.Env, opts *options) (*acquired, error) {
	c, err := e.ServerClient()
	if err != nil {
		return nil, err
	}
	ref := opts.pool + opts.template
	tc := &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{GenerateName: ref + "-run-", Namespace: opts.namespace},
		Spec: v1alpha1.TestClusterSpec{
			PoolRef: opts.pool, TemplateRef: opts.template,
			// The lease outlives the run by a margin; the run ends it.
			TTL: &metav1.Duration{Duration: opts.wait + opts.timeout + 10*time.Minute},
		},
	}
	if err := c.Create(ctx, tc); err != nil {
		return nil, fmt.Errorf("create TestCluster: %w", err)
	}
	release := func(ctx context.Context) error {
		return client.IgnoreNotFound(c.Delete(ctx, tc))
	}
	kubeconfig, err := lease.WaitReady(ctx, c, tc, opts.wait, e.Progress())
	if err != nil {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return nil, errors.Join(err, release(cleanup))
	}
	path, err := lease.WriteKubeconfig(e.ServerLayout().LeaseKubeconfig(tc.Namespace, tc.Name), kubeconfig)
	if err != nil {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return nil, errors.Join(err, release(cleanup))
	}
	return &acquired{
		cluster: clusterOf(tc.Name, tc.Status.Endpoint, tc.Status.KubernetesVersion, path, tc.Status.Ingress),
		// A held cluster keeps its kubeconfig until 'ephemera delete
		// testcluster' removes it.
		release: func(ctx context.Context) error {
			if err := release(ctx); err != nil {
				return err
			}
			_, err := lease.RemoveKubeconfig(e.ServerLayout(), tc.Namespace, tc.Name)
			return err
		},
		hold: func(ctx context.Context) (string, error) {
			base := tc.DeepCopy()
			now := time.Now()
			// The lease now only serves the hold: both end together.
			tc.Spec.HoldUntil = &metav1.Time{Time: now.Add(opts.holdFor)}
			tc.Spec.TTL = &metav1.Duration{Duration: opts.holdFor}
			if tc.Annotations == nil {
				tc.Annotations = map[string]string{}
			}
			tc.Annotations[v1alpha1.HeartbeatAnnotation] = v1alpha1.HeartbeatValue(now)
			if err := c.Patch(ctx, tc, client.MergeFrom(base)); err != nil {
				return "", err
			}
			return fmt.Sprintf(" • Holding TestCluster %s/%s until %s for debugging: export KUBECONFIG=%s; give it back with: ephemera delete testcluster %s -n %s",
				tc.Namespace, tc.Name, tc.Spec.HoldUntil.UTC().Format(time.RFC3339), path, tc.Name, tc.Namespace), nil
		},
	}, nil
}

// clusterOf is what the test command is told about its cluster.
func clusterOf(name, endpoint, version, kubeconfig string, ingress *v1alpha1.IngressStatus) runner.Cluster {
	c := runner.Cluster{Name: name, Endpoint: endpoint, KubernetesVersion: version, Kubeconfig: kubeconfig}
	c.IngressAddress, c.IngressDomain = runner.IngressOf(ingress)
	return c
}
