// Package pools is the command that lists the ClusterPools of the ephemera server.
package pools

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

// NewCommand returns the get pools command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &object.GetOptions{}
	cmd := &cobra.Command{
		Use:     "pools [NAME...]",
		Aliases: []string{"pool", "clusterpools", "clusterpool"},
		Short:   "List ClusterPools (warm clusters) on the ephemera server",
		Long: `List the ClusterPools of the ephemera server. A pool keeps MINREADY clusters
of its TEMPLATE Ready and unclaimed, and at most MAXSIZE clusters in all, so
that 'ephemera create testcluster --pool NAME' binds one at once. READY
counts unclaimed Ready clusters, CLAIMED those bound to a TestCluster, and
QUEUED the claims waiting for one (because the pool is at MAXSIZE or still
building).

-o wide adds the pool's size, the clusters being built and the Ready
condition's message; -o yaml and -o json print the objects.`,
		Example: `  ephemera get pools
  ephemera get pools -A -o wide
  ephemera get pool ci -o yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return object.Get(cmd.Context(), e, kind, *opts, args)
		},
	}
	opts.AddFlags(cmd.Flags(), "ClusterPools")
	return cmd
}

// kind tells object.Get how to fetch and show ClusterPools.
var kind = object.Kind[v1alpha1.ClusterPool, *v1alpha1.ClusterPool]{
	Name:      "ClusterPool",
	Plural:    "ClusterPools",
	NewList:   func() client.ObjectList { return &v1alpha1.ClusterPoolList{} },
	EmptyHint: func(e *env.Env, ns string) string { return emptyHint(ns, e.ServerKubeconfigPath()) },
	Table:     table,
}

func emptyHint(ns, kubeconfig string) string {
	return fmt.Sprintf("No ClusterPools %s. Define one (kind ClusterPool, apiVersion %s, spec.templateRef naming a ClusterTemplate) with: kubectl --kubeconfig %s apply -f pool.yaml", object.Where(ns), v1alpha1.GroupVersion, kubeconfig)
}

// table renders pools as a header and rows, as of now.
func table(pools []*v1alpha1.ClusterPool, allNamespaces, wide bool, now time.Time) ([]string, [][]string) {
	header := []string{"NAME", "TEMPLATE", "MINREADY", "MAXSIZE", "READY", "CLAIMED", "QUEUED", "AGE"}
	if allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if wide {
		header = append(header, "SIZE", "PROVISIONING", "MESSAGE")
	}
	itoa := func(n int32) string { return strconv.Itoa(int(n)) }
	rows := make([][]string, 0, len(pools))
	for _, p := range pools {
		st := p.Status
		row := []string{p.Name, p.Spec.TemplateRef, itoa(p.Spec.MinReadyOrDefault()), itoa(p.Spec.MaxSizeOrDefault()), itoa(st.Ready), itoa(st.Claimed), itoa(st.Queued), printer.Age(p.CreationTimestamp.Time, now)}
		if allNamespaces {
			row = append([]string{p.Namespace}, row...)
		}
		if wide {
			msg := ""
			if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
				msg = c.Message
			}
			row = append(row, itoa(st.Size), itoa(st.Provisioning), printer.OrDash(msg))
		}
		rows = append(rows, row)
	}
	return header, rows
}
