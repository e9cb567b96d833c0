// Package addons groups the commands that install a template's addons.
package addons

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/addons/apply"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
)

// NewCommand returns the addons command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "addons",
		Short: "Install a ClusterTemplate's addons (manifests and Helm charts, in phases) into a cluster",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(apply.NewCommand(e))
	return cmd
}
