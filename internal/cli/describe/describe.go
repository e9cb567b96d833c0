// Package describe groups the commands that show one object of the ephemera server in full.
package describe

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/describe/testrun"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
)

// NewCommand returns the describe command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe",
		Short: "Show a TestRun of the ephemera server in full, with its conditions and events",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(testrun.NewCommand(e))
	return cmd
}
