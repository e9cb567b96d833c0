package lease

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ephemera-dev/ephemera/internal/server"
)

// RemoveKubeconfig removes the kubeconfig the CLI wrote for a TestCluster
// at the layout's LeaseKubeconfig, and its namespace's dir once empty. It
// says whether there was one; a missing file is no error.
func RemoveKubeconfig(l server.Layout, namespace, name string) (bool, error) {
	path := l.LeaseKubeconfig(namespace, name)
	err := os.Remove(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("remove kubeconfig: %w", err)
	}
	_ = os.Remove(filepath.Dir(path)) // fails while other kubeconfigs are there
	return true, nil
}

// WriteKubeconfig writes data to path atomically, mode 0600 in directories
// created 0700, and returns the absolute path.
func WriteKubeconfig(path string, data []byte) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	dir := filepath.Dir(abs)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".*.tmp") // mode 0600
	if err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), abs)
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write kubeconfig %s: %w", abs, werr)
	}
	return abs, nil
}
