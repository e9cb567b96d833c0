// Package image is the command that pushes an image archive to the host's local registry.
package image

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

type options struct{ tag string }

// NewCommand returns the push image command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "image IMAGE.tar [--tag NAME:TAG]",
		Short: "Push an image archive to the local registry; prints its name, localhost:PORT/NAME:TAG",
		Long: `Push the image of an archive in 'docker save' format (what 'docker save' and
'ephemera build image -o' write) to the host's local registry, starting the
registry daemon if needed, and print the name it goes by: localhost:PORT/NAME:TAG
(PORT is 5001 unless that port was taken). Pods in every real-node cluster on
this host pull it by that name, and so do docker, crane and others on the host.

The name is --tag, or the archive's own tag without its registry host
(example.com/team/app:v1 becomes localhost:5001/team/app:v1). An archive with
several images is pushed whole, each by its own tags, when --tag is not given.
Use a tag other than latest, or set imagePullPolicy, so that pods pick up a
new push under the same name.`,
		Example: `  ephemera build image --from-binary ./hello --tag hello:v1 -o hello.tar
  ephemera push image hello.tar                  # localhost:5001/hello:v1
  kubectl run hello --image=localhost:5001/hello:v1

  docker save example.com/app:v2 -o app.tar
  ephemera push image app.tar --tag app:ci-123   # localhost:5001/app:ci-123`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), e, opts, args[0])
		},
	}
	cmd.Flags().StringVarP(&opts.tag, "tag", "t", "", "name in the local registry, like app:v1 (default: the archive's own tag)")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options, archive string) error {
	if opts.tag != "" {
		if _, err := registry.LocalName(opts.tag); err != nil {
			return fmt.Errorf("--tag %q is not a valid image name (want like app:v1, lower-case): %w", opts.tag, err)
		}
	}
	names, err := Push(ctx, e, archive, opts.tag)
	if err != nil {
		return err
	}
	for _, n := range names {
		fmt.Fprintln(e.Out, n)
	}
	return nil
}

// Push pushes the archive to the local registry (starting the daemon if
// needed), reports each name on ErrOut and returns them; build image --push
// uses it too.
func Push(ctx context.Context, e *env.Env, archive, tag string) ([]string, error) {
	d, err := e.EnsureRegistry(ctx)
	if err != nil {
		return nil, err
	}
	names, err := registry.PushArchive(ctx, d, archive, tag)
	if err != nil {
		return names, err
	}
	for _, n := range names {
		fmt.Fprintf(e.ErrOut, "Pushed %s to the local registry: pods in every real-node cluster on this host pull it by that name\n", n)
	}
	return names, nil
}
