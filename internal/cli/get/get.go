// Package get groups the get commands.
package get

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/get/clusters"
	"github.com/ephemera-dev/ephemera/internal/cli/get/kubeconfig"
	"github.com/ephemera-dev/ephemera/internal/cli/get/pools"
	"github.com/ephemera-dev/ephemera/internal/cli/get/templates"
	"github.com/ephemera-dev/ephemera/internal/cli/get/testclusters"
	"github.com/ephemera-dev/ephemera/internal/cli/get/testruns"
)

// NewCommand returns the get command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show local clusters and their kubeconfigs, or the ephemera server's TestClusters, TestRuns, pools and templates",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(
		clusters.NewCommand(e),
		kubeconfig.NewCommand(e),
		testclusters.NewCommand(e),
		testruns.NewCommand(e),
		pools.NewCommand(e),
		templates.NewCommand(e),
	)
	return cmd
}
