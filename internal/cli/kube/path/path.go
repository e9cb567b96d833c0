// Package path is the command that prints where an installed component is.
package path

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/kube"
)

type options struct {
	version string
}

// NewCommand returns the kube path command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "path [COMPONENT]",
		Short: "Print the path of an installed component, or of the bin dir",
		Long:  fmt.Sprintf("Print the path of an installed component binary (one of %v), or of the dir holding them all.", kube.Components),
		Example: `  $(ephemera kube path kubectl) version
  export PATH="$(ephemera kube path):$PATH"`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: kube.Components,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), e, opts, args)
		},
	}
	cmd.Flags().StringVar(&opts.version, "version", kube.DefaultVersion, "Kubernetes release")
	return cmd
}

func run(_ context.Context, e *env.Env, opts *options, args []string) error {
	inst, err := e.Cache().Get(opts.version)
	if err != nil {
		return err
	}
	p := filepath.Join(inst.Dir, "bin")
	if len(args) == 1 {
		if !slices.Contains(kube.Components, args[0]) {
			return fmt.Errorf("unknown component %q: want one of %v", args[0], kube.Components)
		}
		p = inst.Bin(args[0])
	}
	_, err = fmt.Fprintln(e.Out, p)
	return err
}
