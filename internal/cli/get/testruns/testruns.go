// Package testruns is the command that lists the TestRuns of the ephemera server.
package testruns

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

// NewCommand returns the get testruns command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &object.GetOptions{}
	cmd := &cobra.Command{
		Use:     "testruns [NAME...]",
		Aliases: []string{"testrun", "tr"},
		Short:   "List TestRuns (tests run as Jobs against their own cluster) on the ephemera server",
		Long: `List the TestRuns of the ephemera server. A TestRun runs a test container as a
Job in the server's management plane, against a cluster of its own.

PHASE is Pending (waiting for its cluster), Running, Succeeded, Failed (the
tests failed or timed out) or Error (the tests could not run: no cluster, no
image...). CLUSTER is the TestCluster the run uses, or the number of cells of
a matrix run (one child TestRun each). TESTS and FAILURES sum up the JUnit XML
the tests wrote; FAILURES counts failures and errors. DURATION runs from the
start of the test container to the end of the run, or to now.

-o wide adds the cluster's Kubernetes version, the runner Job and the test
command's exit code; -o yaml and -o json print the objects. See one run in
full with 'ephemera describe testrun NAME', its output with
'ephemera logs testrun NAME'.`,
		Example: `  ephemera get testruns
  ephemera get tr -A -o wide
  ephemera get testrun e2e-abcde -o yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return object.Get(cmd.Context(), e, kind, *opts, args)
		},
	}
	opts.AddFlags(cmd.Flags(), "TestRuns")
	return cmd
}

// kind tells object.Get how to fetch and show TestRuns.
var kind = object.Kind[v1alpha1.TestRun, *v1alpha1.TestRun]{
	Name:      "TestRun",
	Plural:    "TestRuns",
	NewList:   func() client.ObjectList { return &v1alpha1.TestRunList{} },
	EmptyHint: func(e *env.Env, ns string) string { return emptyHint(ns, e.ServerKubeconfigPath()) },
	Table:     table,
	After:     reportErrors,
}

func emptyHint(ns, kubeconfig string) string {
	return fmt.Sprintf("No TestRuns %s. Create one with: kubectl --kubeconfig %s apply -f testrun.yaml", object.Where(ns), kubeconfig)
}

// reportErrors says on stderr why runs in phase Error could not run; the
// table has no room for it.
func reportErrors(e *env.Env, runs []*v1alpha1.TestRun, _ object.GetOptions) {
	for _, tr := range runs {
		if tr.Status.Phase != v1alpha1.TestRunError {
			continue
		}
		if c := meta.FindStatusCondition(tr.Status.Conditions, v1alpha1.ConditionComplete); c != nil && c.Message != "" {
			fmt.Fprintf(e.ErrOut, "TestRun %s/%s is Error: %s\n", tr.Namespace, tr.Name, c.Message)
		}
	}
}

// table renders TestRuns as a header and rows, as of now.
func table(runs []*v1alpha1.TestRun, allNamespaces, wide bool, now time.Time) ([]string, [][]string) {
	header := []string{"NAME", "PHASE", "CLUSTER", "TESTS", "FAILURES", "DURATION", "AGE"}
	if allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if wide {
		header = append(header, "VERSION", "JOB", "EXIT")
	}
	rows := make([][]string, 0, len(runs))
	for _, tr := range runs {
		tests, failures := "-", "-"
		if r := tr.Status.Results; r != nil {
			tests, failures = strconv.Itoa(int(r.Tests)), strconv.Itoa(int(r.Failures+r.Errors))
		}
		row := []string{tr.Name, printer.OrDash(string(tr.Status.Phase)), Cluster(tr), tests, failures, Duration(tr, now), printer.Age(tr.CreationTimestamp.Time, now)}
		if allNamespaces {
			row = append([]string{tr.Namespace}, row...)
		}
		if wide {
			exit := "-"
			if tr.Status.ExitCode != nil {
				exit = strconv.Itoa(int(*tr.Status.ExitCode))
			}
			row = append(row, printer.OrDash(tr.Status.KubernetesVersion), printer.OrDash(tr.Status.Job), exit)
		}
		rows = append(rows, row)
	}
	return header, rows
}

// Cluster says where a run runs: its TestCluster, or "N cells" for a
// matrix; "-" while it has none yet.
func Cluster(tr *v1alpha1.TestRun) string {
	if tr.Spec.Matrix != nil {
		n := len(tr.Status.Cells)
		if n == 0 {
			n = CellCount(tr.Spec)
		}
		if n == 1 {
			return "1 cell"
		}
		return fmt.Sprintf("%d cells", n)
	}
	return printer.OrDash(tr.Status.TestCluster)
}

// CellCount is the number of cells a matrix run has: every template by
// every Kubernetes version; 0 without a matrix.
func CellCount(spec v1alpha1.TestRunSpec) int {
	if spec.Matrix == nil {
		return 0
	}
	return max(1, len(spec.Matrix.Templates)) * max(1, len(spec.Matrix.KubernetesVersions))
}

// Duration is how long a run has run: from status.startTime to
// status.completionTime, or to now while it runs; "-" before it started.
func Duration(tr *v1alpha1.TestRun, now time.Time) string {
	start := tr.Status.StartTime
	if start == nil || start.IsZero() {
		return "-"
	}
	end := now
	if c := tr.Status.CompletionTime; c != nil && !c.IsZero() {
		end = c.Time
	}
	if end.Before(start.Time) {
		return "0s"
	}
	return duration.HumanDuration(end.Sub(start.Time))
}

// Get returns the TestRun named key; a missing one gives an error that says
// how to list them, for which apierrors.IsNotFound holds.
func Get(ctx context.Context, c client.Reader, key client.ObjectKey) (*v1alpha1.TestRun, error) {
	tr := &v1alpha1.TestRun{}
	err := c.Get(ctx, key, tr)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("TestRun %q not found in namespace %q ('ephemera get testruns -n %s' lists them, -A in every namespace): %w", key.Name, key.Namespace, key.Namespace, err)
	}
	if err != nil {
		return nil, object.Error("get", "TestRun", key, err)
	}
	return tr, nil
}
