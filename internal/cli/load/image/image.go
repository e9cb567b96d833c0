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
	"github.com/ephemera-dev/ephemera/internal/server"
)

type options struct {
	cluster string
	server  bool
}

// deps are how run finds where to load.
type deps struct {
	// managementPlane returns the provider that keeps the embedded
	// server's management plane.
	managementPlane func(e *env.Env) (provider.Provider, error)
}

// NewCommand returns the load image command.
func NewCommand(e *env.Env) *cobra.Command {
	return newCommand(e, deps{managementPlane: managementPlane})
}

func newCommand(e *env.Env, d deps) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:     "image ARCHIVE... (--cluster NAME | --server)",
		Aliases: []string{"images"},
		Short:   "Load image archives into a cluster's nodes, or the server's, without a registry",
		Long: `Load container images from archive files into every real node of a cluster,
so pods can run them without a registry (like 'kind load image-archive').
With --server instead of --cluster, load them into the management plane of
the embedded ephemera server ('ephemera serve' with the same --state-dir),
where TestRuns run their test containers as Jobs: a TestRun's
spec.runner.image can then name a loaded image.

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
any (create one with --real-nodes 1). A server in operator mode
('ephemera serve --kubeconfig') runs its Jobs on a cluster of its own: push
runner images to a registry there.`,
		Example: `  docker save example.com/app:v1 -o app.tar
  ephemera load image app.tar --cluster demo
  kubectl run app --image=example.com/app:v1

  # Several archives at once
  ephemera load image api.tar worker.tar.gz --cluster demo

  # A test image for TestRuns (spec.runner.image: example.com/e2e:v1)
  ephemera build image --from-binary ./e2e.test --tag example.com/e2e:v1 -o e2e.tar
  ephemera load image e2e.tar --server`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), e, opts, args, d)
		},
	}
	cmd.Flags().StringVar(&opts.cluster, "cluster", "", "cluster to load the images into")
	cmd.Flags().BoolVar(&opts.server, "server", false, "load the images into the embedded server's management plane, for TestRuns, instead of a cluster")
	return cmd
}

// validate checks the arguments: archives, and exactly one of --cluster and
// --server.
func validate(opts *options, archives []string) error {
	if len(archives) == 0 {
		return errors.New("name the image archives to load, like: ephemera load image app.tar --cluster NAME")
	}
	switch {
	case opts.server && opts.cluster != "":
		return errors.New("--server and --cluster are mutually exclusive: load into a cluster (--cluster NAME) or into the embedded server's management plane, for TestRuns (--server)")
	case !opts.server && opts.cluster == "":
		return errors.New("--cluster or --server is required: name the cluster to load into, like: ephemera load image " + strings.Join(archives, " ") + " --cluster NAME ('ephemera get clusters' lists them), or load into the embedded server's management plane, for TestRuns, with --server")
	}
	return nil
}

func run(ctx context.Context, e *env.Env, opts *options, archives []string, d deps) error {
	if err := validate(opts, archives); err != nil {
		return err
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
	t, err := findTarget(ctx, e, opts, d)
	if err != nil {
		return err
	}
	var all []string
	for _, a := range inspected {
		names, err := load(ctx, t.loader, t.cluster, a)
		if errors.Is(err, provider.ErrUnsupported) {
			return t.unsupported(err)
		}
		if err != nil {
			return fmt.Errorf("load %s into %s: %w", a.Path, t.what, err)
		}
		if len(names) == 0 {
			names = a.Names
		}
		fmt.Fprintf(e.ErrOut, "Loaded %s into %s: %s\n", a.Path, t.what, strings.Join(names, ", "))
		for _, n := range names {
			fmt.Fprintln(e.Out, n)
		}
		all = append(all, names...)
	}
	if opts.server {
		fmt.Fprint(e.ErrOut, serverHint(all))
	} else {
		fmt.Fprint(e.ErrOut, hint(all))
	}
	return nil
}

// target is where images are loaded.
type target struct {
	loader provider.ImageLoader
	// cluster is the cluster's name for the loader.
	cluster string
	// what names the target in messages, like cluster "demo".
	what string
	// server says the target is the embedded server's management plane.
	server bool
}

// unsupported explains a provider.ErrUnsupported from the loader.
func (t target) unsupported(err error) error {
	if t.server {
		return fmt.Errorf("%s has no node to run images, nor TestRun Jobs (it was made with serve --runner-node=false, or by an older ephemera): %w", t.what, err)
	}
	return fmt.Errorf("%s cannot run images, which needs a real node (create a cluster with --real-nodes 1): %w", t.what, err)
}

// findTarget returns the cluster named by --cluster, or with --server the
// embedded server's management plane.
func findTarget(ctx context.Context, e *env.Env, opts *options, d deps) (target, error) {
	if opts.server {
		return findManagementPlane(ctx, e, d)
	}
	p, err := findProvider(ctx, e, opts.cluster)
	if err != nil {
		return target{}, err
	}
	loader, ok := p.(provider.ImageLoader)
	if !ok {
		return target{}, fmt.Errorf("cluster %q cannot load images: its provider %s runs no container runtime", opts.cluster, p.Name())
	}
	return target{loader: loader, cluster: opts.cluster, what: fmt.Sprintf("cluster %q", opts.cluster)}, nil
}

// findManagementPlane returns the embedded server's management plane, if
// it runs.
func findManagementPlane(ctx context.Context, e *env.Env, d deps) (target, error) {
	const what = "the embedded server's management plane"
	p, err := d.managementPlane(e)
	if err != nil {
		return target{}, err
	}
	c, err := p.Get(ctx, server.ManagementPlaneName)
	if errors.Is(err, provider.ErrNotFound) {
		return target{}, fmt.Errorf("no embedded server here: start one with ephemera serve (state dir %s; a server in operator mode, serve --kubeconfig, pulls images from a registry): %w", e.StateDir, err)
	}
	if err != nil {
		return target{}, fmt.Errorf("find %s: %w", what, err)
	}
	if c.Phase != provider.PhaseRunning {
		msg := ""
		if c.Message != "" {
			msg = ": " + c.Message
		}
		return target{}, fmt.Errorf("%s is %s%s; start it with ephemera serve", what, c.Phase, msg)
	}
	loader, ok := p.(provider.ImageLoader)
	if !ok {
		return target{}, fmt.Errorf("%s cannot load images: its provider %s runs no container runtime", what, p.Name())
	}
	return target{loader: loader, cluster: server.ManagementPlaneName, what: what, server: true}, nil
}

// managementPlane returns the provider that keeps the embedded server's
// management plane, built as 'ephemera serve' builds it (by the server's
// Layout).
func managementPlane(e *env.Env) (provider.Provider, error) {
	p, err := e.ServerLayout().ManagementPlaneProvider(e.Providers())
	if err != nil {
		return nil, err
	}
	return p, nil
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

// serverHint says how TestRuns use the loaded images.
func serverHint(names []string) string {
	if len(names) == 0 {
		return ""
	}
	use := "Use it in a TestRun as spec.runner.image: "
	if len(names) > 1 {
		use = "Use them in TestRuns by name, like spec.runner.image: "
	}
	for _, n := range names {
		if strings.HasSuffix(n, ":latest") {
			return use + familiar(n) + " with spec.runner.imagePullPolicy: Never (with a latest tag the kubelet pulls from a registry otherwise)\n"
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
