// Package prune is the command that evicts blobs from the registry's pull-through cache.
package prune

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

type options struct{ size string }

// NewCommand returns the registry prune command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "prune [--size SIZE]",
		Short: "Evict least recently used blobs from the cache (all of them without --size)",
		Long: `Evict the least recently used blobs of the pull-through cache until it holds
at most --size (without it: empty the cache). Blobs being served or written
are kept. The local registry's images are never pruned. A running daemon
prunes its own store; otherwise the store is pruned directly.`,
		Example: `  ephemera registry prune --size 5Gi
  ephemera registry prune`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e, opts)
		},
	}
	cmd.Flags().StringVar(&opts.size, "size", "0", "what the cache may keep, like 5Gi or 500M")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options) error {
	limit, err := registry.ParseSize(opts.size)
	if err != nil {
		return fmt.Errorf("--size: %w", err)
	}
	dir := e.RegistryPath()
	st, err := registry.Prune(ctx, dir, limit)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.ErrOut, "Pruned the cache of %s to %s in %d blobs\n", dir, registry.FormatBytes(st.Bytes), st.Blobs)
	return nil
}
