// Package configure is the command that sets the registry daemon's settings.
package configure

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

type options struct {
	cacheSize      string
	upstream       string
	username       string
	passwordFile   string
	tokenFile      string
	caFiles        []string
	mirrors        []string
	insecure       []string
	reset, restart bool
	changed        func(string) bool
}

// NewCommand returns the registry configure command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "configure [flags]",
		Short: "Set the cache size, upstream, CAs, mirrored and plain-HTTP registries",
		Long: `Set the registry daemon's settings, kept in DIR/settings.json and read
whenever the daemon starts. Flags given replace those settings (a repeatable
flag replaces the whole list); others are kept, or cleared with --reset.
Without flags it prints the settings.

A running daemon keeps its settings until it restarts: pass --restart, or
run 'ephemera registry stop' and 'start' (clusters fall back to pulling
directly meanwhile).

--registry-upstream makes another host's ephemera registry the upstream of
every registry (a hierarchy: CI runners share one cache), with basic
(--registry-upstream-username and a password file) or bearer (a token file)
credentials. Credentials for registries themselves come from the Docker
config.json of whoever starts the daemon ($DOCKER_CONFIG/config.json or
~/.docker/config.json); what the daemon pulls with them is served to every
cluster on this host.`,
		Example: `  # Cap the cache at 20 GiB, also mirror a private registry with its own CA
  ephemera registry configure --cache-size 20Gi \
    --registry-mirror registry.example.com --registry-ca ./example-ca.pem

  # Pull everything through a shared cache on another host
  ephemera registry configure --registry-upstream https://cache.ci.example:5001 \
    --registry-upstream-username ci --registry-upstream-password-file /run/secrets/cache-pw --restart

  # A plain-HTTP registry on the LAN
  ephemera registry configure --registry-mirror 10.1.2.3:5000 --insecure-registry 10.1.2.3:5000

  # Show the settings; start over
  ephemera registry configure
  ephemera registry configure --reset`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.changed = cmd.Flags().Changed
			return run(cmd.Context(), e, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.cacheSize, "cache-size", "", "cap of the pull-through cache, like 20Gi or 500M (0: no cap); least recently used blobs are evicted")
	f.StringVar(&opts.upstream, "registry-upstream", "", "another host's ephemera registry, https://HOST:PORT, to pull every registry through (empty: none)")
	f.StringVar(&opts.username, "registry-upstream-username", "", "user for basic auth to --registry-upstream")
	f.StringVar(&opts.passwordFile, "registry-upstream-password-file", "", "file holding the password for --registry-upstream-username")
	f.StringVar(&opts.tokenFile, "registry-upstream-token-file", "", "file holding a bearer token for --registry-upstream")
	f.StringArrayVar(&opts.caFiles, "registry-ca", nil, "PEM file of CA certificates trusted for TLS registries besides the system roots (repeatable)")
	f.StringArrayVar(&opts.mirrors, "registry-mirror", nil, "registry HOST[:PORT] clusters pull through the cache, besides docker.io, registry.k8s.io, ghcr.io, quay.io, gcr.io (repeatable)")
	f.StringArrayVar(&opts.insecure, "insecure-registry", nil, "registry HOST:PORT the cache may reach over plain HTTP (repeatable)")
	f.BoolVar(&opts.reset, "reset", false, "start from empty settings (then apply the other flags)")
	f.BoolVar(&opts.restart, "restart", false, "restart a running daemon so the settings apply now")
	return cmd
}

// settingFlags are the flags that change settings.
var settingFlags = []string{"cache-size", "registry-upstream", "registry-upstream-username", "registry-upstream-password-file",
	"registry-upstream-token-file", "registry-ca", "registry-mirror", "insecure-registry"}

func run(ctx context.Context, e *env.Env, opts *options) error {
	dir := e.RegistryPath()
	s, err := registry.LoadSettings(dir)
	if err != nil && !opts.reset {
		return err
	}
	changed := opts.reset
	for _, f := range settingFlags {
		changed = changed || opts.changed(f)
	}
	if !changed {
		if opts.restart {
			return restart(ctx, e, dir)
		}
		printSettings(e.Out, s)
		return nil
	}
	if opts.reset {
		s = registry.Settings{}
	}
	if opts.changed("cache-size") {
		n, err := registry.ParseSize(opts.cacheSize)
		if err != nil {
			return fmt.Errorf("--cache-size: %w", err)
		}
		s.CacheSize = n
	}
	if opts.changed("registry-upstream") {
		s.Upstream = strings.TrimSuffix(opts.upstream, "/")
		if s.Upstream == "" {
			s.UpstreamUsername, s.UpstreamPasswordFile, s.UpstreamTokenFile = "", "", ""
		}
	}
	if opts.changed("registry-upstream-username") {
		s.UpstreamUsername = opts.username
	}
	if opts.changed("registry-upstream-password-file") {
		s.UpstreamPasswordFile = abs(opts.passwordFile)
		if s.UpstreamPasswordFile != "" {
			s.UpstreamTokenFile = ""
		}
	}
	if opts.changed("registry-upstream-token-file") {
		s.UpstreamTokenFile = abs(opts.tokenFile)
		if s.UpstreamTokenFile != "" {
			s.UpstreamPasswordFile, s.UpstreamUsername = "", ""
		}
	}
	if opts.changed("registry-ca") {
		s.CAFiles = nil
		for _, f := range opts.caFiles {
			s.CAFiles = append(s.CAFiles, abs(f))
		}
	}
	if opts.changed("registry-mirror") {
		s.Mirrors = opts.mirrors
	}
	if opts.changed("insecure-registry") {
		s.Insecure = opts.insecure
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("registry settings not saved:\n%w", err)
	}
	if err := registry.SaveSettings(dir, s); err != nil {
		return err
	}
	fmt.Fprintf(e.ErrOut, "Saved the registry settings in %s\n", filepath.Join(dir, "settings.json"))
	printSettings(e.ErrOut, s)
	if opts.restart {
		return restart(ctx, e, dir)
	}
	if d, ok, _ := registry.Running(dir); ok {
		fmt.Fprintf(e.ErrOut, "The daemon running at %s (pid %d) uses them from its next start: pass --restart, or run 'ephemera registry stop' and 'ephemera registry start'\n", d.Addr, d.PID)
	}
	return nil
}

func restart(ctx context.Context, e *env.Env, dir string) error {
	if err := registry.Stop(ctx, dir); err != nil {
		return err
	}
	d, err := e.EnsureRegistry(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.ErrOut, "Restarted the registry daemon at %s (pid %d)\n", d.Addr, d.PID)
	return nil
}

func abs(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func printSettings(w io.Writer, s registry.Settings) {
	line := func(k, v string) { fmt.Fprintf(w, "  %-12s %s\n", k+":", v) }
	size := "no cap"
	if s.CacheSize > 0 {
		size = registry.FormatBytes(s.CacheSize)
	}
	line("cache size", size)
	switch {
	case s.Upstream == "":
		line("upstream", "none: each registry is pulled directly")
	case s.UpstreamTokenFile != "":
		line("upstream", s.Upstream+" (bearer token from "+s.UpstreamTokenFile+")")
	case s.UpstreamPasswordFile != "":
		line("upstream", s.Upstream+" (user "+s.UpstreamUsername+", password from "+s.UpstreamPasswordFile+")")
	default:
		line("upstream", s.Upstream)
	}
	line("mirrored", strings.Join(s.MirroredHosts(), ", "))
	if len(s.CAFiles) > 0 {
		line("CA files", strings.Join(s.CAFiles, ", "))
	}
	if len(s.Insecure) > 0 {
		line("plain HTTP", strings.Join(s.Insecure, ", "))
	}
}
