// Package create groups the create commands.
package create

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/create/cluster"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
)

// NewCommand returns the create command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a cluster",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(cluster.NewCommand(e))
	return cmd
}
