// Package serve is the hidden command that runs the registry daemon in the foreground.
package serve

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

// NewCommand returns the registry serve command.
func NewCommand(e *env.Env) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry daemon in the foreground (what 'registry start' runs detached)",
		Long: `Run the registry daemon in the foreground until SIGTERM or Ctrl-C, logging to
stderr. 'ephemera registry start' and real-node clusters run this detached;
run it yourself only to debug it, or with --listen to serve on another
address (it refuses to start when a daemon runs for the same dir).`,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return registry.Serve(cmd.Context(), e.RegistryPath(), listen)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (default 127.0.0.1:5001, or the next free port)")
	return cmd
}
