// Package push groups the commands that put artifacts into the host's local registry.
package push

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/push/image"
)

// NewCommand returns the push command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "push",
		Short: "Push images to the host's local registry, for every cluster on the host",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(image.NewCommand(e))
	return cmd
}
