// Package delete groups the delete commands.
package delete

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/delete/cluster"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
)

// NewCommand returns the delete command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete clusters",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(cluster.NewCommand(e))
	return cmd
}
