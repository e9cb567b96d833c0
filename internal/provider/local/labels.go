package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ephemera-dev/ephemera/internal/provider"
)

var _ provider.Labeler = (*Provider)(nil)

// SetLabels implements provider.Labeler: it replaces labels.json in the
// cluster's dir by a rename, so readers see the old labels or the new ones.
// A Delete moves the dir away before removing it (see removeDir), so a
// SetLabels racing it either lands before the dir moves or finds no dir
// and returns provider.ErrNotFound; it never adds a file to a dir being
// removed.
func (p *Provider) SetLabels(_ context.Context, name string, labels map[string]string) error {
	notFound := fmt.Errorf("set labels of cluster %q: %w", name, provider.ErrNotFound)
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return notFound
	}
	dir := p.clusterDir(name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return notFound
	}
	if labels == nil {
		labels = map[string]string{}
	}
	err := writeJSON(filepath.Join(dir, labelsFile), labels)
	if errors.Is(err, os.ErrNotExist) {
		return notFound
	}
	if err != nil {
		return fmt.Errorf("set labels of cluster %q: %w", name, err)
	}
	return nil
}
