// Package registry groups the commands that run the host's image registry daemon.
package registry

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/registry/configure"
	"github.com/ephemera-dev/ephemera/internal/cli/registry/export"
	"github.com/ephemera-dev/ephemera/internal/cli/registry/importdir"
	"github.com/ephemera-dev/ephemera/internal/cli/registry/prune"
	"github.com/ephemera-dev/ephemera/internal/cli/registry/serve"
	"github.com/ephemera-dev/ephemera/internal/cli/registry/start"
	"github.com/ephemera-dev/ephemera/internal/cli/registry/status"
	"github.com/ephemera-dev/ephemera/internal/cli/registry/stop"
)

// NewCommand returns the registry command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run the host's image cache and local registry, shared by every cluster",
		Long: `One registry daemon per host (per --registry-dir) serves every cluster on it:

  - a pull-through cache: real-node clusters pull docker.io, registry.k8s.io,
    ghcr.io, quay.io, gcr.io and every --registry-mirror through it, so an
    image is fetched once per host, and pulls keep working from the cache
    when the registry is unreachable; other registries are pulled directly;
  - a local registry for your own images: 'ephemera push image' makes an
    image pullable in every cluster as localhost:PORT/NAME:TAG.

It listens only on host loopback (127.0.0.1:5001, or the next free port);
clusters reach it through their own link. The first real-node cluster starts
it, or 'ephemera registry start' does; it keeps running across clusters.
Credentials for private registries come from the Docker config.json of
whoever starts it, and what it pulls is served to every cluster on the host.
See docs/registry.md.`,
		Example: `  ephemera registry configure --cache-size 20Gi
  ephemera registry start
  ephemera registry status
  ephemera push image app.tar            # prints localhost:5001/app:v1
  ephemera registry export --dir ci-images docker.io/library/nginx:1.27 app:v1
  ephemera registry import --dir ci-images
  ephemera registry stop --purge`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(
		start.NewCommand(e),
		stop.NewCommand(e),
		status.NewCommand(e),
		configure.NewCommand(e),
		prune.NewCommand(e),
		export.NewCommand(e),
		importdir.NewCommand(e),
		serve.NewCommand(e),
	)
	return cmd
}
