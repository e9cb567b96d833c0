// Package supervise is the hidden command that keeps one local cluster's processes running.
package supervise

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
)

// CommandName is the hidden command the local provider starts.
const CommandName = "supervise"

// NewCommand returns the hidden supervise command.
func NewCommand(_ *env.Env) *cobra.Command {
	return &cobra.Command{
		Use:    CommandName + " CLUSTER_DIR",
		Short:  "Run and restart one local cluster's processes (started by create)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return local.Supervise(cmd.Context(), args[0])
		},
	}
}
