// Package env carries what every command needs: streams, directories and providers.
package env

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/progress"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/registry"
	"github.com/ephemera-dev/ephemera/internal/server"
)

// Env is handed to every command constructor. Flags of the root command fill
// StateDir and CacheDir before any command runs.
type Env struct {
	// In is standard input (cluster files given as -f -).
	In io.Reader
	// Out receives program output: tables, YAML, JSON, kubeconfigs.
	Out io.Writer
	// ErrOut receives progress and messages.
	ErrOut io.Writer
	// StateDir holds the clusters of the local provider.
	StateDir string
	// CacheDir holds built Kubernetes versions.
	CacheDir string
	// HostNetwork is the host-side range of real-node clusters; empty
	// means the provider's default.
	HostNetwork string
	// LBNetwork is the range clusters take their LoadBalancer addresses
	// from; empty means the provider's default.
	LBNetwork string
	// IngressDomainBase names ingress domains of clusters without a
	// domain; empty means the provider's default (sslip.io).
	IngressDomainBase string
	// DNSUpstream and Domain are defaults for clusters' network sections
	// (serve --dns-upstream, --domain).
	DNSUpstream []string
	Domain      string
	// AdvertiseAddress makes clusters reachable from other machines
	// (create cluster and serve --advertise-address).
	AdvertiseAddress string
	// RegistryDir is the registry daemon's dir, from --registry-dir; empty
	// means RegistryPath's default.
	RegistryDir string
	// ServerKubeconfig is the management plane's kubeconfig, from
	// --server-kubeconfig; empty means ServerKubeconfigPath's default.
	ServerKubeconfig string
	// NewProviders builds the provider registry from the settled dirs.
	NewProviders func(*Env) *provider.Registry

	providers *provider.Registry
}

// Cache returns the Kubernetes binaries cache.
func (e *Env) Cache() kube.Cache { return kube.Cache{Dir: e.CacheDir} }

// Providers returns the registry, built on first use.
func (e *Env) Providers() *provider.Registry {
	if e.providers == nil {
		e.providers = e.NewProviders(e)
	}
	return e.providers
}

// RegistryPath returns the registry daemon's dir: --registry-dir, else
// $EPHEMERA_REGISTRY_DIR, else registry under the cache dir.
func (e *Env) RegistryPath() string {
	if e.RegistryDir != "" {
		return e.RegistryDir
	}
	return registry.DefaultDir(e.CacheDir)
}

// EnsureRegistry returns the host's registry daemon, starting this program
// as the daemon when none runs for RegistryPath.
func (e *Env) EnsureRegistry(ctx context.Context) (registry.Daemon, error) {
	self, err := os.Executable()
	if err != nil {
		return registry.Daemon{}, fmt.Errorf("start registry daemon: %w", err)
	}
	return registry.Ensure(ctx, e.RegistryPath(), self)
}

// Progress returns a reporter on ErrOut that redraws lines only on a terminal.
func (e *Env) Progress() progress.Reporter {
	return progress.New(e.ErrOut, IsTerminal(e.ErrOut))
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ServerKubeconfigEnv names the management plane's kubeconfig when
// --server-kubeconfig is not given.
const ServerKubeconfigEnv = "EPHEMERA_SERVER_KUBECONFIG"

// ServerKubeconfigPath returns where the management plane's kubeconfig is:
// --server-kubeconfig, else $EPHEMERA_SERVER_KUBECONFIG, else the file
// `ephemera serve` writes under the state dir.
func (e *Env) ServerKubeconfigPath() string {
	if e.ServerKubeconfig != "" {
		return e.ServerKubeconfig
	}
	if p := os.Getenv(ServerKubeconfigEnv); p != "" {
		return p
	}
	return e.ServerLayout().Kubeconfig()
}

// ServerLayout returns where the state dir keeps the server's files and
// the TestCluster kubeconfigs the CLI writes.
func (e *Env) ServerLayout() server.Layout { return server.NewLayout(e.StateDir) }

// ServerClient returns a client of the management plane that `ephemera
// serve` runs or manages. It knows the ephemera.dev kinds and Secrets,
// ConfigMaps and Events, and maps them without discovery requests; it can
// watch them too.
func (e *Env) ServerClient() (client.WithWatch, error) {
	path := e.ServerKubeconfigPath()
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no ephemera server found: %s does not exist; start one with 'ephemera serve', or pass --server-kubeconfig (env %s)", path, ServerKubeconfigEnv)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("read server kubeconfig %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	s := serverScheme()
	return client.NewWithWatch(cfg, client.Options{Scheme: s, Mapper: serverMapper(s)})
}

// ExitError ends the program with Code. Err, when set, is printed first.
// Commands that pass on another program's exit status, like run, return it.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

// Unwrap returns Err.
func (e *ExitError) Unwrap() error { return e.Err }
