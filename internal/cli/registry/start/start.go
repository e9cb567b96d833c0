// Package start is the command that starts the host's registry daemon.
package start

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

// NewCommand returns the registry start command.
func NewCommand(e *env.Env) *cobra.Command {
	return &cobra.Command{
		Use:   "start",
		Short: "Start the registry daemon in the background (if it is not running)",
		Long: `Start the registry daemon detached, in its own session, with its log in
DIR/daemon.log and its settings from DIR/settings.json ('ephemera registry
configure'). Nothing happens if it runs already. Real-node clusters start it
on demand, so this is only needed to push images before any cluster exists.`,
		Example: `  ephemera registry start
  ephemera --registry-dir /var/cache/ci-registry registry start`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e)
		},
	}
}

func run(ctx context.Context, e *env.Env) error {
	dir := e.RegistryPath()
	_, was, err := registry.Running(dir)
	if err != nil {
		return err
	}
	d, err := e.EnsureRegistry(ctx)
	if err != nil {
		return err
	}
	state := "Started"
	if was {
		state = "Already running:"
	}
	fmt.Fprintf(e.ErrOut, "%s the registry daemon at %s (pid %d, dir %s)\n", state, d.Addr, d.PID, dir)
	fmt.Fprintf(e.ErrOut, "Local images go by %s/NAME:TAG: ephemera push image IMAGE.tar\n", d.LocalHost())
	return nil
}
