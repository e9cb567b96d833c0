// Package export is the command that writes images from the registry to an OCI image layout.
package export

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

type options struct {
	dir      string
	platform string
}

// NewCommand returns the registry export command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "export --dir DIR IMAGE...",
		Short: "Write images from the cache and the local registry to a directory (for a CI cache)",
		Long: `Write images to an OCI image layout at DIR, each named by its full reference,
so a CI cache or artifact can carry them to another runner, where
'ephemera registry import --dir DIR' puts them back.

Images are read through the registry daemon (started if needed):
  - app:v1, team/app:v1 and localhost:PORT/app:v1 from the local registry;
  - any other registry's image (docker.io/library/nginx:1.27,
    10.1.2.3:5000/app:v1) through the cache: from the cache when it has it,
    else pulled from the registry once. The cache serves only the
    registries it mirrors (the defaults and 'registry configure
    --registry-mirror'), and 'registry import' on the other runner needs
    the same mirrors.
Give a registry host for images of Docker Hub (docker.io/library/nginx:1.27,
not nginx:1.27, which names the local registry). Exporting to DIR again adds
images and replaces those of the same name.`,
		Example: `  # Stage 1: build, push, export with the images the tests use
  ephemera push image app.tar                    # localhost:5001/app:v1
  ephemera registry export --dir ci-images app:v1 docker.io/library/postgres:16

  # Stage 2, on another runner, after restoring ci-images from the CI cache
  ephemera registry import --dir ci-images`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), e, opts, args)
		},
	}
	cmd.Flags().StringVar(&opts.dir, "dir", "", "OCI image layout directory to write (created if missing; required)")
	cmd.Flags().StringVar(&opts.platform, "platform", "", "export only this platform of multi-platform images, like linux/amd64 (default: all)")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options, images []string) error {
	if opts.dir == "" || len(images) == 0 {
		return errors.New("name a directory and the images, like: ephemera registry export --dir ci-images app:v1 docker.io/library/nginx:1.27")
	}
	var xo registry.ExportOptions
	if opts.platform != "" {
		p, err := v1.ParsePlatform(opts.platform)
		if err != nil {
			return fmt.Errorf("--platform %q: want OS/ARCH, like linux/amd64: %w", opts.platform, err)
		}
		xo.Platform = p
	}
	xo.Progress = e.ErrOut
	d, err := e.EnsureRegistry(ctx)
	if err != nil {
		return err
	}
	return registry.Export(ctx, d, opts.dir, images, xo)
}
