// Package testclusters is the command that lists the TestClusters of the ephemera server.
package testclusters

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

type options struct {
	namespace     string
	allNamespaces bool
	output        string
}

// NewCommand returns the get testclusters command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:     "testclusters [NAME...]",
		Aliases: []string{"testcluster", "tc"},
		Short:   "List TestClusters (cluster leases) on the ephemera server",
		Long: `List the TestClusters of the ephemera server: leases of clusters claimed from a
pool or built from a template. PHASE is Queued (QUEUE is the place in line),
Provisioning, Ready, Failed (see the message with -o wide) or Deleting.
EXPIRES is when the lease ends, heartbeats and holds included; renew it with
'ephemera extend NAME', keep it with 'ephemera hold NAME'.

-o wide adds the cluster's API endpoint and the Ready condition's message,
which says what a TestCluster waits for or why it failed; -o yaml and -o json
print the objects.`,
		Example: `  ephemera get testclusters
  ephemera get tc -A -o wide
  ephemera get testcluster ci-abcde -o yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), e, opts, args)
		},
	}
	object.AddNamespaceFlag(cmd.Flags(), &opts.namespace)
	cmd.Flags().BoolVarP(&opts.allNamespaces, "all-namespaces", "A", false, "list TestClusters of every namespace")
	cmd.Flags().StringVarP(&opts.output, "output", "o", "", "output format: wide, yaml or json")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options, names []string) error {
	ns, err := scope(opts, names)
	if err != nil {
		return err
	}
	c, err := e.ServerClient()
	if err != nil {
		return err
	}
	tcs, fetchErr := object.Fetch[v1alpha1.TestCluster](ctx, c, &v1alpha1.TestClusterList{}, "TestCluster", ns, names)
	if fetchErr != nil && len(tcs) == 0 {
		return fetchErr
	}
	if opts.output == printer.YAML || opts.output == printer.JSON {
		if err := object.Print(e.Out, opts.output, c.Scheme(), tcs, len(names) == 1); err != nil {
			return err
		}
		return fetchErr
	}
	if len(tcs) == 0 {
		fmt.Fprintln(e.ErrOut, emptyHint(ns))
		return nil
	}
	header, rows := table(tcs, opts.allNamespaces, opts.output == printer.Wide, time.Now())
	if err := printer.Rows(e.Out, header, rows); err != nil {
		return err
	}
	if opts.output != printer.Wide {
		for _, tc := range tcs {
			if tc.Status.Phase == v1alpha1.TestClusterFailed {
				fmt.Fprintf(e.ErrOut, "TestCluster %s/%s is Failed: %s\n", tc.Namespace, tc.Name, readyMessage(tc))
			}
		}
	}
	return fetchErr
}

// scope checks the flags and returns the namespace to look in, "" for all.
func scope(opts *options, names []string) (string, error) {
	if err := printer.ValidateFormat(opts.output, printer.Table, printer.Wide, printer.YAML, printer.JSON); err != nil {
		return "", err
	}
	return object.Namespace(opts.namespace, opts.allNamespaces, names, "TestClusters")
}

func emptyHint(ns string) string {
	return fmt.Sprintf("No TestClusters %s. Lease a cluster with: ephemera create testcluster --pool POOL (see 'ephemera get pools')", object.Where(ns))
}

// table renders TestClusters as a header and rows, as of now.
func table(tcs []*v1alpha1.TestCluster, allNamespaces, wide bool, now time.Time) ([]string, [][]string) {
	header := []string{"NAME", "PHASE", "POOL/TEMPLATE", "CLUSTER", "QUEUE", "EXPIRES", "AGE"}
	if allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if wide {
		header = append(header, "ENDPOINT", "MESSAGE")
	}
	rows := make([][]string, 0, len(tcs))
	for _, tc := range tcs {
		source := "pool/" + tc.Spec.PoolRef
		if tc.Spec.PoolRef == "" {
			source = "template/" + tc.Spec.TemplateRef
		}
		queue := "-"
		if tc.Status.Phase == v1alpha1.TestClusterQueued && tc.Status.QueuePosition > 0 {
			queue = strconv.Itoa(int(tc.Status.QueuePosition))
		}
		expires := "-"
		if tc.Status.ExpiresAt != nil {
			expires = printer.Relative(tc.Status.ExpiresAt.Time, now)
		}
		row := []string{tc.Name, printer.OrDash(string(tc.Status.Phase)), source, printer.OrDash(tc.Spec.ClusterName), queue, expires, printer.Age(tc.CreationTimestamp.Time, now)}
		if allNamespaces {
			row = append([]string{tc.Namespace}, row...)
		}
		if wide {
			row = append(row, printer.OrDash(tc.Status.Endpoint), printer.OrDash(readyMessage(tc)))
		}
		rows = append(rows, row)
	}
	return header, rows
}

func readyMessage(tc *v1alpha1.TestCluster) string {
	if c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Message
	}
	return ""
}
