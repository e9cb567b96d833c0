// Package kubeconfig is the command that prints a cluster's kubeconfig.
package kubeconfig

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
)

type options struct {
	provider string
}

// NewCommand returns the get kubeconfig command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "kubeconfig NAME",
		Short: "Print a cluster's admin kubeconfig on stdout",
		Example: `  ephemera get kubeconfig demo > demo.kubeconfig
  kubectl --kubeconfig demo.kubeconfig get nodes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), e, opts, args[0])
		},
	}
	cmd.Flags().StringVar(&opts.provider, "provider", "local", "provider that owns the cluster")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options, name string) error {
	p, err := e.Providers().Get(opts.provider)
	if err != nil {
		return err
	}
	b, err := p.Kubeconfig(ctx, name)
	if err != nil {
		return err
	}
	_, err = e.Out.Write(b)
	return err
}
