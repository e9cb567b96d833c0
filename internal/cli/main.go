package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/addons"
	"github.com/ephemera-dev/ephemera/internal/cli/build"
	"github.com/ephemera-dev/ephemera/internal/cli/create"
	"github.com/ephemera-dev/ephemera/internal/cli/delete"
	"github.com/ephemera-dev/ephemera/internal/cli/describe"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/extend"
	"github.com/ephemera-dev/ephemera/internal/cli/get"
	"github.com/ephemera-dev/ephemera/internal/cli/hold"
	"github.com/ephemera-dev/ephemera/internal/cli/kube"
	"github.com/ephemera-dev/ephemera/internal/cli/load"
	"github.com/ephemera-dev/ephemera/internal/cli/logs"
	"github.com/ephemera-dev/ephemera/internal/cli/push"
	registrycmd "github.com/ephemera-dev/ephemera/internal/cli/registry"
	"github.com/ephemera-dev/ephemera/internal/cli/run"
	"github.com/ephemera-dev/ephemera/internal/cli/serve"
	"github.com/ephemera-dev/ephemera/internal/cli/supervise"
	"github.com/ephemera-dev/ephemera/internal/cli/version"
	kubecache "github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
	"github.com/ephemera-dev/ephemera/internal/registry"
	"github.com/ephemera-dev/ephemera/internal/server"
)

// Main runs the command line and returns the exit code. The first Ctrl-C (or
// SIGTERM) cancels the command's context so it can clean up; a second one
// kills the program.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()

	e := &env.Env{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, NewProviders: Providers}
	if err := NewRootCommand(e).ExecuteContext(ctx); err != nil {
		var exit *env.ExitError
		if errors.As(err, &exit) {
			if exit.Err != nil {
				fmt.Fprintf(e.ErrOut, "ERROR: %v\n", exit.Err)
			}
			return exit.Code
		}
		fmt.Fprintf(e.ErrOut, "ERROR: %v\n", err)
		return 1
	}
	return 0
}

// Providers registers every provider this program offers, explicitly.
func Providers(e *env.Env) *provider.Registry {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return provider.NewRegistry(
		local.New(local.Options{
			StateDir:    e.StateDir,
			Cache:       e.Cache(),
			Supervisor:  []string{self, supervise.CommandName},
			HostNetwork: e.HostNetwork,
			LBNetwork:   e.LBNetwork,
			// A server's clusters share the address with its
			// management plane.
			AdvertiseAddress: e.AdvertiseAddress,
			AdvertiseWith:    []string{server.NewLayout(e.StateDir).ManagementPlaneStateDir()},
			RegistryDir:      e.RegistryPath(),
			Warnf: func(format string, args ...any) {
				fmt.Fprintf(e.ErrOut, "Warning: "+format+"\n", args...)
			},
			Network: local.NetworkOptions{
				IngressDomainBase: e.IngressDomainBase,
				DNSUpstream:       e.DNSUpstream,
				Domain:            e.Domain,
			},
		}),
	)
}

// NewRootCommand returns the ephemera command with every subcommand.
func NewRootCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ephemera",
		Short: "Ephemeral, isolated Kubernetes test clusters in seconds",
		Long: `ephemera creates isolated Kubernetes clusters for tests: a real control plane
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler) built from
upstream Kubernetes and run as local processes, with a real node (kubelet,
containerd, CNI, kube-proxy, CoreDNS) in the cluster's own network namespace
and/or simulated nodes.

Start here:
  ephemera kube install                          # build Kubernetes once (cached)
  ephemera create cluster demo                   # one real node
  ephemera load image app.tar --cluster demo     # docker save, OCI layout, or 'ephemera build image'
  ephemera get kubeconfig demo > demo.kubeconfig
  $(ephemera kube path kubectl) --kubeconfig demo.kubeconfig get nodes
  ephemera delete cluster demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	stateDir, _ := local.DefaultStateDir()
	cacheDir, _ := kubecache.DefaultCacheDir()
	cmd.PersistentFlags().StringVar(&e.StateDir, "state-dir", stateDir, "where clusters keep their state (env "+local.StateDirEnv+")")
	cmd.PersistentFlags().StringVar(&e.CacheDir, "cache-dir", cacheDir, "where built Kubernetes versions are cached (env "+kubecache.CacheDirEnv+")")
	cmd.PersistentFlags().StringVar(&e.RegistryDir, "registry-dir", "", "the host's image registry daemon's dir (env "+registry.DirEnv+"; default: registry under --cache-dir)")
	cmd.PersistentFlags().StringVar(&e.ServerKubeconfig, "server-kubeconfig", "", "kubeconfig of the ephemera server's management plane (env "+env.ServerKubeconfigEnv+"; default: the one 'ephemera serve' writes under --state-dir)")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun '%s --help' for usage", err, c.CommandPath())
	})
	cmd.AddCommand(
		create.NewCommand(e),
		delete.NewCommand(e),
		get.NewCommand(e),
		describe.NewCommand(e),
		logs.NewCommand(e),
		extend.NewCommand(e),
		hold.NewCommand(e),
		kube.NewCommand(e),
		build.NewCommand(e),
		load.NewCommand(e),
		addons.NewCommand(e),
		push.NewCommand(e),
		registrycmd.NewCommand(e),
		serve.NewCommand(e),
		run.NewCommand(e),
		version.NewCommand(e),
		supervise.NewCommand(e),
	)
	return cmd
}
