// Package install is the command that builds Kubernetes versions into the cache.
package install

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/kube"
)

type options struct {
	versions []string
}

// NewCommand returns the kube install command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Build Kubernetes components for a version from the Go module proxy",
		Long: fmt.Sprintf(`Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the
node components kubelet and kube-proxy, and kubectl for a Kubernetes release
from the Go module proxy, plus the node simulator kwok %s, into a versioned
cache dir. Real nodes also get two image archives made here: the pod
sandbox image %s (a static pause program) and the
cluster DNS image %s (CoreDNS from the module proxy,
with just the plugins cluster DNS needs). Nothing is downloaded but Go
modules; no Docker or image registry is needed.

A cold build takes a few minutes and about 3 GB of Go build cache; installing a
version that is already there returns at once. An interrupted or failed build
leaves nothing that counts as installed. Versions live side by side.

Known versions: %v (default %s).`, kube.KwokVersion, kube.PauseImageRef, kube.CoreDNSImageRef, kube.KnownVersions, kube.DefaultVersion),
		Example: `  ephemera kube install
  ephemera kube install --version v1.35.4
  ephemera kube install --version v1.36.3 --version v1.35.4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e, opts)
		},
	}
	cmd.Flags().StringSliceVar(&opts.versions, "version", []string{kube.DefaultVersion}, "Kubernetes release to build, like v1.36.3 (repeat for several)")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options) error {
	for _, v := range opts.versions {
		if err := kube.ValidateVersion(v); err != nil {
			return err
		}
	}
	in := &kube.Installer{Cache: e.Cache(), Progress: e.Progress()}
	for _, v := range opts.versions {
		inst, built, err := in.Install(ctx, v)
		if err != nil {
			return fmt.Errorf("install Kubernetes %s: %w", v, err)
		}
		if built {
			fmt.Fprintf(e.ErrOut, "Kubernetes %s installed in %s (took %s)\n", v, inst.Dir, time.Duration(inst.BuildDuration).Round(time.Second))
		} else {
			fmt.Fprintf(e.ErrOut, "Kubernetes %s is already installed in %s\n", v, inst.Dir)
		}
	}
	return nil
}
