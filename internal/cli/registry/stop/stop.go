// Package stop is the command that stops the host's registry daemon.
package stop

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

type options struct{ purge bool }

// NewCommand returns the registry stop command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "stop [--purge]",
		Short: "Stop the registry daemon; --purge also removes its dir (cache, local images, settings)",
		Long: `Stop the registry daemon (SIGTERM; it finishes the requests in flight for up
to 10 s, then SIGKILL). Its content stays for the next start unless --purge
removes the whole registry dir: the cache, the local registry's images, the
settings and the log. Clusters keep running and pull directly while it is
stopped; a real-node cluster created later starts it again.`,
		Example: `  ephemera registry stop
  ephemera registry stop --purge`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.purge, "purge", false, "also remove the registry dir: cached and pushed images, settings, log")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options) error {
	dir := e.RegistryPath()
	d, was, err := registry.Running(dir)
	if err != nil {
		return err
	}
	if err := registry.Stop(ctx, dir); err != nil {
		return err
	}
	if was {
		fmt.Fprintf(e.ErrOut, "Stopped the registry daemon (pid %d, %s)\n", d.PID, d.Addr)
	} else {
		fmt.Fprintf(e.ErrOut, "The registry daemon of %s was not running\n", dir)
	}
	if !opts.purge {
		return nil
	}
	if err := registry.Purge(dir); err != nil {
		return err
	}
	fmt.Fprintf(e.ErrOut, "Removed %s\n", dir)
	return nil
}
