// Package get groups the get commands.
package get

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/get/clusters"
	"github.com/ephemera-dev/ephemera/internal/cli/get/kubeconfig"
)

// NewCommand returns the get command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show clusters and their kubeconfigs",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(clusters.NewCommand(e), kubeconfig.NewCommand(e))
	return cmd
}
