// Package testclusters is the command that lists the TestClusters of the ephemera server.
package testclusters

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

// NewCommand returns the get testclusters command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &object.GetOptions{}
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
			return object.Get(cmd.Context(), e, kind, *opts, args)
		},
	}
	opts.AddFlags(cmd.Flags(), "TestClusters")
	return cmd
}

// reportFailed says on stderr why Failed TestClusters failed, unless -o
// wide shows it already.
func reportFailed(e *env.Env, tcs []*v1alpha1.TestCluster, opts object.GetOptions) {
	if opts.Output == printer.Wide {
		return
	}
	for _, tc := range tcs {
		if tc.Status.Phase == v1alpha1.TestClusterFailed {
			fmt.Fprintf(e.ErrOut, "TestCluster %s/%s is Failed: %s\n", tc.Namespace, tc.Name, readyMessage(tc))
		}
	}
}

// kind tells object.Get how to fetch and show TestClusters.
var kind = object.Kind[v1alpha1.TestCluster, *v1alpha1.TestCluster]{
	Name:      "TestCluster",
	Plural:    "TestClusters",
	NewList:   func() client.ObjectList { return &v1alpha1.TestClusterList{} },
	EmptyHint: func(e *env.Env, ns string) string { return emptyHint(ns) },
	Table:     table,
	After:     reportFailed,
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
