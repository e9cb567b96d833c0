// Package delete groups the delete commands.
package delete

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/delete/cluster"
	"github.com/ephemera-dev/ephemera/internal/cli/delete/testcluster"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
)

// NewCommand returns the delete command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete local clusters, or TestClusters on the ephemera server",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(cluster.NewCommand(e), testcluster.NewCommand(e))
	return cmd
}
