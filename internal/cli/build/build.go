// Package build groups the commands that build artifacts, like images.
package build

import (
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/build/image"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
)

// NewCommand returns the build command group.
func NewCommand(e *env.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build container images without Docker",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(image.NewCommand(e))
	return cmd
}
