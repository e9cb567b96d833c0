// Package env carries what every command needs: streams, directories and providers.
package env

import (
	"io"
	"os"

	"golang.org/x/term"

	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/progress"
	"github.com/ephemera-dev/ephemera/internal/provider"
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

// Progress returns a reporter on ErrOut that redraws lines only on a terminal.
func (e *Env) Progress() progress.Reporter {
	return progress.New(e.ErrOut, IsTerminal(e.ErrOut))
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
