// Package image is the command that loads image archives into a cluster's nodes.
package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/image"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

type options struct {
	cluster string
}

// NewCommand returns the load image command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:     "image ARCHIVE... --cluster NAME",
		Aliases: []string{"images"},
		Short:   "Load image archives into a cluster's nodes, without a registry",
		Long: `Load container images from archive files into every real node of a cluster,
so pods can run them without a registry (like 'kind load image-archive').

An archive is a tar file holding either
  - a 'docker save' tarball:   docker save example.com/app:v1 -o app.tar
  - an OCI image layout:       e.g. buildah push IMG oci-archive:app.tar:example.com/app:v1
  - an image made without Docker: ephemera build image --from-binary ./app --tag example.com/app:v1 -o app.tar
A gzip-compressed archive (app.tar.gz) works too. Each archive is checked
before anything is loaded: an archive that is not an image, is truncated,
lacks part of an image, holds an image without a name or only for another
platform than linux/amd64 is refused with what is wrong, and the cluster is
left unchanged.

Pods use a loaded image by its name. The kubelet pulls images from a registry
unless it finds them on the node: tag images with something other than
latest (imagePullPolicy defaults to IfNotPresent then), or set
imagePullPolicy: Never.

Only real nodes run images; a cluster with only simulated nodes cannot load
any (create one with --real-nodes 1).`,
		Example: `  docker save example.com/app:v1 -o app.tar
  ephemera load image app.tar --cluster demo
  kubectl run app --image=example.com/app:v1

  # Several archives at once
  ephemera load image api.tar worker.tar.gz --cluster demo`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), e, opts, args)
		},
	}
	cmd.Flags().StringVar(&opts.cluster, "cluster", "", "cluster to load the images into (required)")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options, archives []string) error {
	if len(archives) == 0 {
		return errors.New("name the image archives to load, like: ephemera load image app.tar --cluster NAME")
	}
	if opts.cluster == "" {
		return errors.New("--cluster is required: name the cluster to load into, like: ephemera load image " + strings.Join(archives, " ") + " --cluster NAME ('ephemera get clusters' lists them)")
	}
	// Check every archive before loading any, so a bad one changes nothing.
	inspected := make([]*image.Archive, 0, len(archives))
	for _, path := range archives {
		a, err := image.Inspect(path)
		if err != nil {
			return err
		}
		inspected = append(inspected, a)
	}
	p, err := findProvider(ctx, e, opts.cluster)
	if err != nil {
		return err
	}
	loader, ok := p.(provider.ImageLoader)
	if !ok {
		return fmt.Errorf("cluster %q cannot load images: its provider %s runs no container runtime", opts.cluster, p.Name())
	}
	var all []string
	for _, a := range inspected {
		names, err := load(ctx, loader, opts.cluster, a)
		if errors.Is(err, provider.ErrUnsupported) {
			return fmt.Errorf("cluster %q cannot run images, which needs a real node (create a cluster with --real-nodes 1): %w", opts.cluster, err)
		}
		if err != nil {
			return fmt.Errorf("load %s into cluster %q: %w", a.Path, opts.cluster, err)
		}
		if len(names) == 0 {
			names = a.Names
		}
		fmt.Fprintf(e.ErrOut, "Loaded %s into cluster %q: %s\n", a.Path, opts.cluster, strings.Join(names, ", "))
		for _, n := range names {
			fmt.Fprintln(e.Out, n)
		}
		all = append(all, names...)
	}
	fmt.Fprint(e.ErrOut, hint(all))
	return nil
}

// findProvider returns the provider that has the cluster.
func findProvider(ctx context.Context, e *env.Env, name string) (provider.Provider, error) {
	for _, p := range e.Providers().All() {
		_, err := p.Get(ctx, name)
		if errors.Is(err, provider.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, fmt.Errorf("load images into cluster %q ('ephemera get clusters' lists the clusters): %w", name, provider.ErrNotFound)
}

// load hands one archive to the provider, as a plain tar: containerd's
// import does not read compressed archives.
func load(ctx context.Context, loader provider.ImageLoader, cluster string, a *image.Archive) ([]string, error) {
	path := a.Path
	if a.Compression != "" {
		dir, err := os.MkdirTemp("", "ephemera-load-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "image.tar")
		if err := image.Decompress(a.Path, path); err != nil {
			return nil, err
		}
	}
	return loader.LoadImage(ctx, cluster, path)
}

// hint says how pods use the loaded images.
func hint(names []string) string {
	if len(names) == 0 {
		return ""
	}
	use := "Use it in a pod as image: "
	if len(names) > 1 {
		use = "Use them in pods by name, like image: "
	}
	for _, n := range names {
		if strings.HasSuffix(n, ":latest") {
			return use + familiar(n) + " with imagePullPolicy: Never (with a latest tag the kubelet pulls from a registry otherwise)\n"
		}
	}
	return use + familiar(names[0]) + " (the default imagePullPolicy, IfNotPresent, uses the loaded copy)\n"
}

// familiar shortens a full image name the way Docker shows it:
// docker.io/library/app:v1 is app:v1.
func familiar(name string) string {
	if rest, ok := strings.CutPrefix(name, "docker.io/library/"); ok && !strings.Contains(rest, "/") {
		return rest
	}
	return strings.TrimPrefix(name, "docker.io/")
}
