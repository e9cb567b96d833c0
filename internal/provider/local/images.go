package local

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/ephemera-dev/ephemera/internal/provider"
)

var _ provider.ImageLoader = (*Provider)(nil)

// LoadImage implements provider.ImageLoader: it imports the archive into
// the containerd of the cluster's real node, from inside the cluster's
// mount namespace (where containerd's socket is), reading the archive here
// so any path of the caller works.
func (p *Provider) LoadImage(ctx context.Context, name, path string) ([]string, error) {
	c, err := p.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	dir := p.clusterDir(name)
	var st clusterState
	if err := readJSON(filepath.Join(dir, clusterFile), &st); err != nil {
		return nil, fmt.Errorf("cluster %q is not ready for images (%s): %w", name, c.Phase, err)
	}
	if st.Node == nil {
		return nil, fmt.Errorf("%w: cluster %q has only simulated nodes, which run no images; create one with a real node (--real-nodes 1)", provider.ErrUnsupported, name)
	}
	var ss supervisorStatus
	_ = readJSON(filepath.Join(dir, statusFile), &ss)
	cs := ss.Components[containerdComponent]
	if !cs.Running || cs.PID == 0 {
		return nil, fmt.Errorf("cluster %q: containerd is not running (cluster is %s: %s)", name, c.Phase, c.Message)
	}
	names, err := ctrImport(ctx, path, "nsenter", "--target", strconv.Itoa(cs.PID), "--mount", "--net", "--")
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", name, err)
	}
	return names, nil
}
