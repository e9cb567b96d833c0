// Package load groups the commands that put artifacts into clusters.
package load

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/load/image"
)

// NewCommand returns the load command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Load images into clusters without a registry",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(image.NewCommand(e))
	return cmd
}
