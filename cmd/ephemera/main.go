// Command ephemera creates ephemeral Kubernetes test clusters.
package main

import (
	"os"

	"github.com/ephemera-dev/ephemera/internal/cli"
)

func main() {
	os.Exit(cli.Main())
}
