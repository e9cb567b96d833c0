// Package templates is the command that lists the ClusterTemplates of the ephemera server.
package templates

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

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

// NewCommand returns the get templates command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
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
			return run(cmd.Context(), e, opts, args)
		},
	}
	object.AddNamespaceFlag(cmd.Flags(), &opts.namespace)
	cmd.Flags().BoolVarP(&opts.allNamespaces, "all-namespaces", "A", false, "list ClusterTemplates of every namespace")
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
	templates, fetchErr := object.Fetch[v1alpha1.ClusterTemplate](ctx, c, &v1alpha1.ClusterTemplateList{}, "ClusterTemplate", ns, names)
	if fetchErr != nil && len(templates) == 0 {
		return fetchErr
	}
	if opts.output == printer.YAML || opts.output == printer.JSON {
		if err := object.Print(e.Out, opts.output, c.Scheme(), templates, len(names) == 1); err != nil {
			return err
		}
		return fetchErr
	}
	if len(templates) == 0 {
		fmt.Fprintln(e.ErrOut, emptyHint(ns, e.ServerKubeconfigPath()))
		return nil
	}
	header, rows := table(templates, opts.allNamespaces, opts.output == printer.Wide, time.Now())
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
	return object.Namespace(opts.namespace, opts.allNamespaces, names, "ClusterTemplates")
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
