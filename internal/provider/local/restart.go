package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// Stop kills every process of a cluster and keeps its files, etcd's data
// included, so that Restart can bring it back as it was. `serve` stops its
// management plane this way when it exits.
func (p *Provider) Stop(ctx context.Context, name string) error {
	dir := p.clusterDir(name)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("%w: %q", provider.ErrNotFound, name)
	}
	if err := killAll(ctx, dir); err != nil {
		return fmt.Errorf("stop cluster %q: %w", name, err)
	}
	return nil
}

// Restart starts a stopped control-plane-only cluster again on its own
// data: same certificates, ports and etcd. It is for a cluster that shows as
// Broken because its processes are gone (Stop, a killed supervisor, a host
// restart). Clusters with a real node cannot be restarted: their network
// namespace died with them.
func (p *Provider) Restart(ctx context.Context, name string) error {
	dir := p.clusterDir(name)
	var st clusterState
	if err := readJSON(filepath.Join(dir, clusterFile), &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %q", provider.ErrNotFound, name)
		}
		return fmt.Errorf("restart cluster %q: %w", name, err)
	}
	if st.Node != nil {
		return fmt.Errorf("restart cluster %q: %w: it has a real node; delete it and create it again", name, provider.ErrUnsupported)
	}
	lock, err := flock.TryLock(filepath.Join(dir, createLock))
	if err != nil {
		return fmt.Errorf("restart cluster %q: another command is creating or restarting it: %w", name, err)
	}
	defer lock.Unlock()
	if flock.Held(filepath.Join(dir, supervisorLock)) {
		return nil // running already
	}
	// Leftovers of the old supervisor's session would hold the ports.
	if err := killAll(ctx, dir); err != nil {
		return fmt.Errorf("restart cluster %q: %w", name, err)
	}
	if err := os.Remove(filepath.Join(dir, statusFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if _, err := p.startSupervisor(ctx, dir, false); err != nil {
		return fmt.Errorf("restart cluster %q: %w", name, err)
	}
	return nil
}
