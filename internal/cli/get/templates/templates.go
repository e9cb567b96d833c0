// Package templates is the command that lists the ClusterTemplates of the ephemera server.
package templates

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

// NewCommand returns the get templates command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &object.GetOptions{}
	cmd := &cobra.Command{
		Use:     "templates [NAME...]",
		Aliases: []string{"template", "clustertemplates", "clustertemplate"},
		Short:   "List ClusterTemplates on the ephemera server",
		Long: `List the ClusterTemplates of the ephemera server: descriptions of clusters
that ClusterPools keep warm and that 'ephemera create testcluster --template
NAME' builds. PROVIDER is the backend, VERSION the Kubernetes release
("default": the newest one the server is tested with), REAL and SIMULATED
the node counts. The schema is the one 'ephemera create cluster -f' reads.

-o wide adds the service and pod subnets; -o yaml and -o json print the
objects.`,
		Example: `  ephemera get templates
  ephemera get templates -A
  ephemera get template big -o yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return object.Get(cmd.Context(), e, kind, *opts, args)
		},
	}
	opts.AddFlags(cmd.Flags(), "ClusterTemplates")
	return cmd
}

// kind tells object.Get how to fetch and show ClusterTemplates.
var kind = object.Kind[v1alpha1.ClusterTemplate, *v1alpha1.ClusterTemplate]{
	Name:      "ClusterTemplate",
	Plural:    "ClusterTemplates",
	NewList:   func() client.ObjectList { return &v1alpha1.ClusterTemplateList{} },
	EmptyHint: func(e *env.Env, ns string) string { return emptyHint(ns, e.ServerKubeconfigPath()) },
	Table:     table,
}

func emptyHint(ns, kubeconfig string) string {
	return fmt.Sprintf("No ClusterTemplates %s. Define one (kind ClusterTemplate, apiVersion %s, the schema 'ephemera create cluster --help' shows) with: kubectl --kubeconfig %s apply -f template.yaml", object.Where(ns), v1alpha1.GroupVersion, kubeconfig)
}

// table renders templates as a header and rows, as of now.
func table(templates []*v1alpha1.ClusterTemplate, allNamespaces, wide bool, now time.Time) ([]string, [][]string) {
	header := []string{"NAME", "PROVIDER", "VERSION", "REAL", "SIMULATED", "AGE"}
	if allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if wide {
		header = append(header, "SERVICE-SUBNET", "POD-SUBNET")
	}
	rows := make([][]string, 0, len(templates))
	for _, t := range templates {
		s := t.Spec
		version := s.KubernetesVersion
		if version == "" {
			version = "default"
		}
		row := []string{t.Name, string(s.ProviderOrDefault()), version, strconv.Itoa(int(s.Nodes.RealCount())), strconv.Itoa(int(s.Nodes.SimulatedCount())), printer.Age(t.CreationTimestamp.Time, now)}
		if allNamespaces {
			row = append([]string{t.Namespace}, row...)
		}
		if wide {
			row = append(row, orDefault(s.Network.ServiceSubnet), orDefault(s.Network.PodSubnet))
		}
		rows = append(rows, row)
	}
	return header, rows
}

func orDefault(s string) string {
	if s == "" {
		return "default"
	}
	return s
}
