// Package status is the command that shows the registry daemon's state and cache statistics.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

type options struct{ output string }

// NewCommand returns the registry status command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "status [-o json]",
		Short: "Show the registry daemon's address, cache size, hit ratio, upstreams and local images",
		Long: `Show the running registry daemon: its address (local images go by
localhost:PORT/NAME:TAG), pid and dir; the cache's size against its cap,
blobs, hits and misses since the daemon started, and bytes fetched upstream;
the registries pulled through the cache; the upstream; the local registry's
images. Exits 1 when no daemon runs.`,
		Example: `  ephemera registry status
  ephemera registry status -o json | jq .stats`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.output, "output", "o", "", "output format: json (default: text)")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options) error {
	if opts.output != "" && opts.output != "json" {
		return fmt.Errorf("-o %q: want json, or nothing for text", opts.output)
	}
	dir := e.RegistryPath()
	d, ok, err := registry.Running(dir)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the registry daemon of %s is not running: start it with 'ephemera registry start' (the first real-node cluster starts it too)", dir)
	}
	st, err := registry.FetchStatus(ctx, d)
	if err != nil {
		return err
	}
	if opts.output == "json" {
		enc := json.NewEncoder(e.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printText(e.Out, d, st)
	return nil
}

func printText(w io.Writer, d registry.Daemon, st registry.Status) {
	s := st.Stats
	capText := "no cap"
	if s.MaxBytes > 0 {
		capText = "cap " + registry.FormatBytes(s.MaxBytes)
	}
	upstream := "none: each registry is pulled directly"
	if st.Settings.Upstream != "" {
		upstream = st.Settings.Upstream + " (every registry through it)"
	}
	line := func(k, format string, args ...any) { fmt.Fprintf(w, "%-18s %s\n", k+":", fmt.Sprintf(format, args...)) }
	line("Address", "%s (local images: %s/NAME:TAG)", st.Addr, d.LocalHost())
	line("PID", "%d, started %s", st.PID, st.Started.Local().Format("2006-01-02 15:04:05"))
	line("Directory", "%s", st.Dir)
	line("Cache", "%s (%s), %d blobs", registry.FormatBytes(s.Bytes), capText, s.Blobs)
	line("Requests", "%d hits, %d misses, hit ratio %.1f%%, %d served stale", s.Hits, s.Misses, 100*s.HitRatio(), s.Stale)
	line("Fetched upstream", "%s", registry.FormatBytes(s.UpstreamBytes))
	line("Evictions", "%d", s.Evictions)
	line("Upstream", "%s", upstream)
	line("Mirrored", "%s (other registries are pulled directly)", strings.Join(st.Mirrors, ", "))
	if len(st.Settings.Insecure) > 0 {
		line("Plain HTTP", "%s", strings.Join(st.Settings.Insecure, ", "))
	}
	line("Local images", "%d (%s)", len(st.Local.Images), registry.FormatBytes(st.Local.Bytes))
	for _, img := range st.Local.Images {
		fmt.Fprintf(w, "  %s/%s\n", d.LocalHost(), img)
	}
}
