package lifecycle

import (
	"context"
	"fmt"

	"github.com/ephemera-dev/ephemera/internal/provider"
)

// Delete removes a cluster and everything it holds. Deleting a cluster that
// does not exist succeeds, so retries and cleanup paths are safe.
func Delete(ctx context.Context, p provider.Provider, name string) error {
	if err := p.Delete(ctx, name); err != nil {
		return fmt.Errorf("delete cluster %q: %w", name, err)
	}
	return nil
}
