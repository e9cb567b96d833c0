// Package importdir is the command that puts the images of an exported directory into the registry.
package importdir

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

type options struct{ dir string }

// NewCommand returns the registry import command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "import --dir DIR",
		Short: "Put the images 'registry export' wrote back into the cache and the local registry",
		Long: `Push every image of the OCI image layout at DIR (written by 'ephemera registry
export') through the registry daemon (started if needed): local images
(localhost:PORT/…, whatever the port was) into the local registry, others into
the cache as if just pulled from their registry, so clusters on this host pull
them without going to the registry. Prints a line per image on stderr; an
image that fails does not stop the others.`,
		Example: `  ephemera registry import --dir ci-images`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e, opts)
		},
	}
	cmd.Flags().StringVar(&opts.dir, "dir", "", "OCI image layout directory written by 'registry export' (required)")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options) error {
	if opts.dir == "" {
		return errors.New("name the directory 'registry export' wrote, like: ephemera registry import --dir ci-images")
	}
	d, err := e.EnsureRegistry(ctx)
	if err != nil {
		return err
	}
	done, err := registry.Import(ctx, d, opts.dir, e.ErrOut)
	if err != nil {
		return err
	}
	if len(done) == 0 {
		return fmt.Errorf("%s holds no named image", opts.dir)
	}
	return nil
}
