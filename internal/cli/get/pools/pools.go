// Package pools is the command that lists the ClusterPools of the ephemera server.
package pools

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

// NewCommand returns the get pools command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
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
			return run(cmd.Context(), e, opts, args)
		},
	}
	object.AddNamespaceFlag(cmd.Flags(), &opts.namespace)
	cmd.Flags().BoolVarP(&opts.allNamespaces, "all-namespaces", "A", false, "list ClusterPools of every namespace")
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
	pools, fetchErr := object.Fetch[v1alpha1.ClusterPool](ctx, c, &v1alpha1.ClusterPoolList{}, "ClusterPool", ns, names)
	if fetchErr != nil && len(pools) == 0 {
		return fetchErr
	}
	if opts.output == printer.YAML || opts.output == printer.JSON {
		if err := object.Print(e.Out, opts.output, c.Scheme(), pools, len(names) == 1); err != nil {
			return err
		}
		return fetchErr
	}
	if len(pools) == 0 {
		fmt.Fprintln(e.ErrOut, emptyHint(ns, e.ServerKubeconfigPath()))
		return nil
	}
	header, rows := table(pools, opts.allNamespaces, opts.output == printer.Wide, time.Now())
	if err := printer.Rows(e.Out, header, rows); err != nil {
		return err
	}
	return fetchErr
}

// scope checks the flags and returns the namespace to look in, "" for all.
func scope(opts *options, names []string) (string, error) {
	if err := printer.ValidateFormat(opts.output, printer.Table, printer.Wide, printer.YAML, printer.JSON); err != nil {
		return "", err
	}
	return object.Namespace(opts.namespace, opts.allNamespaces, names, "ClusterPools")
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
