// Package kube groups the commands that build and find Kubernetes binaries.
package kube

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/kube/install"
	"github.com/ephemera-dev/ephemera/internal/cli/kube/list"
	"github.com/ephemera-dev/ephemera/internal/cli/kube/path"
)

// NewCommand returns the kube command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kube",
		Short: "Build and list the Kubernetes versions clusters run",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(install.NewCommand(e), list.NewCommand(e), path.NewCommand(e))
	return cmd
}
