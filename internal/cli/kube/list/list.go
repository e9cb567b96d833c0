// Package list is the command that lists installed Kubernetes versions.
package list

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
	"github.com/ephemera-dev/ephemera/internal/kube"
)

type options struct {
	output string
}

// NewCommand returns the kube list command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the installed Kubernetes versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.output, "output", "o", "", "output format: wide, yaml or json")
	return cmd
}

func run(_ context.Context, e *env.Env, opts *options) error {
	if err := printer.ValidateFormat(opts.output, printer.Table, printer.Wide, printer.YAML, printer.JSON); err != nil {
		return err
	}
	insts, err := e.Cache().List()
	if err != nil {
		return err
	}
	if opts.output == printer.YAML || opts.output == printer.JSON {
		type item struct {
			kube.Installation `json:",inline"`
			Dir               string `json:"dir"`
			Default           bool   `json:"default"`
			Current           bool   `json:"current"`
		}
		items := make([]item, 0, len(insts))
		for _, i := range insts {
			items = append(items, item{Installation: i, Dir: i.Dir, Default: i.Version == kube.DefaultVersion, Current: i.Current()})
		}
		return printer.Object(e.Out, opts.output, items)
	}
	if len(insts) == 0 {
		fmt.Fprintf(e.ErrOut, "No Kubernetes version is installed. Install the default one with: ephemera kube install\n")
		return nil
	}
	header := []string{"VERSION", "DEFAULT", "STATUS", "ETCD", "KWOK", "BUILT"}
	if opts.output == printer.Wide {
		header = append(header, "GO", "DIR")
	}
	var rows [][]string
	for _, i := range insts {
		def := ""
		if i.Version == kube.DefaultVersion {
			def = "*"
		}
		status := "ready"
		if !i.Current() {
			status = "outdated: run ephemera kube install --version " + i.Version
		}
		row := []string{i.Version, def, status, i.EtcdVersion, i.KwokVersion, i.BuiltAt.Local().Format(time.DateTime)}
		if opts.output == printer.Wide {
			row = append(row, i.GoVersion, i.Dir)
		}
		rows = append(rows, row)
	}
	return printer.Rows(e.Out, header, rows)
}
