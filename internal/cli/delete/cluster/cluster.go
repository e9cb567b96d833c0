// Package cluster is the command that deletes clusters.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

type options struct {
	all bool
}

// NewCommand returns the delete cluster command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:     "cluster NAME... | --all",
		Aliases: []string{"clusters"},
		Short:   "Delete clusters and everything they run",
		Long: `Delete clusters: stop every process, free every port and remove every file of
each cluster, whatever its phase (Running, Creating or Broken). Deleting a
cluster that does not exist succeeds, so the command is safe in cleanup steps.`,
		Example: `  ephemera delete cluster demo
  ephemera delete cluster --all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.all == (len(args) > 0) {
				return errors.New("name the clusters to delete, or pass --all (not both)")
			}
			return run(cmd.Context(), e, opts, args)
		},
	}
	cmd.Flags().BoolVar(&opts.all, "all", false, "delete every cluster of every provider")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options, names []string) error {
	var errs []error
	for _, p := range e.Providers().All() {
		targets := names
		if opts.all {
			cs, err := p.List(ctx)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			targets = nil
			for _, c := range cs {
				targets = append(targets, c.Name)
			}
		}
		for _, name := range targets {
			started := time.Now()
			_, getErr := p.Get(ctx, name)
			if err := lifecycle.Delete(ctx, p, name); err != nil {
				errs = append(errs, err)
				continue
			}
			if errors.Is(getErr, provider.ErrNotFound) {
				if !opts.all {
					fmt.Fprintf(e.ErrOut, "Cluster %q does not exist; nothing to delete\n", name)
				}
				continue
			}
			fmt.Fprintf(e.ErrOut, "Deleted cluster %q in %s\n", name, time.Since(started).Round(time.Millisecond))
		}
	}
	return errors.Join(errs...)
}
