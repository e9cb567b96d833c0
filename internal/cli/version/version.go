// Package version is the command that prints ephemera's version.
package version

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/kube"
)

// NewCommand returns the version command.
func NewCommand(e *env.Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ephemera's version and its default Kubernetes version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e)
		},
	}
}

func run(_ context.Context, e *env.Env) error {
	v := "(devel)"
	if info, ok := debug.ReadBuildInfo(); ok {
		v = info.Main.Version
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	_, err := fmt.Fprintf(e.Out, "ephemera %s\ndefault Kubernetes %s\n", v, kube.DefaultVersion)
	return err
}
