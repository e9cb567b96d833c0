// Package logs groups the commands that print the output of what the ephemera server runs.
package logs

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/logs/testrun"
)

// NewCommand returns the logs command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Print the output of TestRuns on the ephemera server",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(testrun.NewCommand(e))
	return cmd
}
