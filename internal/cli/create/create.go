// Package create groups the create commands.
package create

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/create/cluster"
	"github.com/ephemera-dev/ephemera/internal/cli/create/testcluster"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
)

// NewCommand returns the create command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a local cluster, or lease one from the ephemera server",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(cluster.NewCommand(e), testcluster.NewCommand(e))
	return cmd
}
