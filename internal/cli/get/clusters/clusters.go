// Package clusters is the command that lists clusters.
package clusters

import (
	"context"
	"fmt"
	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

type options struct {
	output string
}

// NewCommand returns the get clusters command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:     "clusters [NAME...]",
		Aliases: []string{"cluster"},
		Short:   "List clusters with their observed phase",
		Long: `List clusters with their phase as observed now: Creating, Running, or Broken
(an interrupted create, processes gone after a reboot, a component that failed
three health checks in a row). A Running cluster with a component being
restarted says so in its message (-o wide). -o wide also shows a real-node
cluster's ingress address and domain, and its host port mappings
(HOST:HOSTPORT->PORT/PROTOCOL).
Broken clusters are listed, never hidden; 'ephemera delete cluster NAME'
removes them.`,
		Example: `  ephemera get clusters
  ephemera get clusters -o wide
  ephemera get clusters demo -o yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), e, opts, args)
		},
	}
	cmd.Flags().StringVarP(&opts.output, "output", "o", "", "output format: wide, yaml or json")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options, names []string) error {
	if err := printer.ValidateFormat(opts.output, printer.Table, printer.Wide, printer.YAML, printer.JSON); err != nil {
		return err
	}
	var all []provider.Cluster
	for _, p := range e.Providers().All() {
		if len(names) == 0 {
			cs, err := p.List(ctx)
			if err != nil {
				return err
			}
			all = append(all, cs...)
			continue
		}
		for _, n := range names {
			c, err := p.Get(ctx, n)
			if err != nil {
				return err
			}
			all = append(all, *c)
		}
	}
	if opts.output == printer.YAML || opts.output == printer.JSON {
		if all == nil {
			all = []provider.Cluster{}
		}
		return printer.Object(e.Out, opts.output, all)
	}
	if len(all) == 0 {
		fmt.Fprintln(e.ErrOut, "No clusters. Create one with: ephemera create cluster NAME")
		return nil
	}
	header := []string{"NAME", "PROVIDER", "PHASE", "VERSION", "REAL", "SIMULATED", "AGE"}
	if opts.output == printer.Wide {
		header = append(header, "ENDPOINT", "INGRESS", "DOMAIN", "PORTS", "MESSAGE")
	}
	rows := make([][]string, 0, len(all))
	var notes []string
	for _, c := range all {
		age := "-"
		if !c.CreatedAt.IsZero() {
			age = duration.HumanDuration(time.Since(c.CreatedAt))
		}
		row := []string{c.Name, c.Provider, string(c.Phase), orDash(c.KubernetesVersion), strconv.Itoa(int(c.RealNodes)), strconv.Itoa(int(c.SimulatedNodes)), age}
		if opts.output == printer.Wide {
			address, domain := "", ""
			if c.Ingress != nil {
				address, domain = c.Ingress.Address, c.Ingress.Domain
			}
			row = append(row, orDash(c.Endpoint), orDash(address), orDash(domain), orDash(portsOf(c.Ports)), orDash(c.Message))
		}
		rows = append(rows, row)
		if c.Phase == provider.PhaseBroken && opts.output != printer.Wide {
			notes = append(notes, fmt.Sprintf("Cluster %q is Broken: %s", c.Name, c.Message))
		}
	}
	if err := printer.Rows(e.Out, header, rows); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(e.ErrOut, n)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// portsOf shows port mappings as 127.0.0.1:8080->80/tcp, comma-separated.
func portsOf(ps []v1alpha1.PortMapping) string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s->%d/%s", net.JoinHostPort(p.Address, strconv.Itoa(int(p.HostPort))), p.Port, strings.ToLower(p.Protocol)))
	}
	return strings.Join(out, ",")
}
