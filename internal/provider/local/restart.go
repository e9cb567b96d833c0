package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/local/sniroute"
)

var _ provider.Restarter = (*Provider)(nil)

// Stop kills every process of a cluster, a real node's pods included, and
// removes what they held on the host (the cluster's cgroups and the host
// end of its veth), but keeps its files, etcd's data and a real node's
// images and containers included, so that Restart can bring it back as it
// was. `serve` stops its management plane this way when it exits.
func (p *Provider) Stop(ctx context.Context, name string) error {
	dir := p.clusterDir(name)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("%w: %q", provider.ErrNotFound, name)
	}
	if err := stopCluster(ctx, dir); err != nil {
		return fmt.Errorf("stop cluster %q: %w", name, err)
	}
	return nil
}

// Restart implements provider.Restarter: it starts a stopped cluster again
// on its own data (same certificates, ports and etcd, and for a real node
// the same node address, which is in the certificates, containerd root and
// kubelet dir). It is for a
// cluster that shows as Broken because its processes are gone (Stop, a
// killed supervisor, a host restart); it returns at once when the cluster
// is supervised already. Whatever of the old run is left (components, a
// real node's pods) is stopped first.
//
// A real node gets a new network namespace with the /30 it was created
// with. Restart fails, saying so, when another interface of the host has
// taken that range meanwhile: such a cluster can only be deleted and
// created again. Its pods run again in new sandboxes. Until its kubelet
// reports, a few seconds after the API is up, the node and its pods show
// the status they had when the cluster stopped (Ready, Running).
//
// A durable provider (Options.Durable) drops --unsafe-no-fsync from the
// plan of a cluster created without it.
func (p *Provider) Restart(ctx context.Context, name string) (err error) {
	dir := p.clusterDir(name)
	var st clusterState
	if err := readJSON(filepath.Join(dir, clusterFile), &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %q", provider.ErrNotFound, name)
		}
		return fmt.Errorf("restart cluster %q: %w", name, err)
	}
	lock, err := flock.TryLock(filepath.Join(dir, createLock))
	if err != nil {
		return fmt.Errorf("restart cluster %q: another command is creating or restarting it: %w", name, err)
	}
	defer lock.Unlock()
	if flock.Held(filepath.Join(dir, supervisorLock)) {
		return nil // running already
	}
	// Leftovers of the old run would hold the ports, and a real node's
	// veth name, cgroups and network namespace.
	if err := stopCluster(ctx, dir); err != nil {
		return fmt.Errorf("restart cluster %q: %w", name, err)
	}
	if err := os.Remove(filepath.Join(dir, statusFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if p.durable {
		if err := makeDurable(dir, &st); err != nil {
			return fmt.Errorf("restart cluster %q: %w", name, err)
		}
	}
	defer func() {
		if err != nil {
			// Leave it stopped, as it was, not half started.
			cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = stopCluster(cleanupCtx, dir)
		}
	}()
	var advertiseFile *os.File
	if st.Advertise != nil {
		if advertiseFile, err = sniroute.Listen(st.Advertise.Address); err != nil {
			return fmt.Errorf("restart cluster %q: %w", name, err)
		}
		defer advertiseFile.Close()
	}
	if st.Node == nil {
		if _, err := p.startSupervisor(ctx, dir, optionalFile(advertiseFile), false); err != nil {
			return fmt.Errorf("restart cluster %q: %w", name, err)
		}
		return nil
	}
	if err := p.restartRealNode(ctx, dir, st, optionalFile(advertiseFile)); err != nil {
		return fmt.Errorf("restart cluster %q: %w", name, err)
	}
	return nil
}

// makeDurable drops --unsafe-no-fsync from the etcd of a cluster planned
// before its provider was durable, so that it syncs to disk from now on.
func makeDurable(dir string, st *clusterState) error {
	changed := false
	for i, c := range st.Components {
		if c.Name != kube.Etcd {
			continue
		}
		args := slices.DeleteFunc(slices.Clone(c.Args), func(a string) bool { return a == unsafeNoFsync })
		if len(args) != len(c.Args) {
			st.Components[i].Args, changed = args, true
		}
	}
	if !changed {
		return nil
	}
	return writeJSON(filepath.Join(dir, clusterFile), st)
}

// restartRealNode starts the supervisor of a real-node cluster in a new
// network namespace and connects it with the cluster's recorded network,
// LoadBalancer range and host ports, holding the host-wide network lock as
// Create does.
func (p *Provider) restartRealNode(ctx context.Context, dir string, st clusterState, advertiseFiles []*os.File) error {
	unlock, err := lockHostNetwork(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := checkSubnetFree(st.Node.Network.Subnet); err != nil {
		return err
	}
	if st.Node.LB.IsValid() {
		if err := checkLBFree(st.Node.LB); err != nil {
			return err
		}
	}
	_, portFiles, err := bindPorts(st.Node.HostPorts)
	if err != nil {
		return err
	}
	defer closeFiles(portFiles)
	if reg := st.Node.Registry; reg != nil {
		f, err := p.restartRegistry(ctx, dir, &st)
		if err != nil {
			return err
		}
		defer f.Close()
		portFiles = append(portFiles, f)
	}
	return p.startRealNode(ctx, dir, st, append(portFiles, advertiseFiles...))
}

// stopCluster kills every process of the cluster in dir, pods included
// (they are in no session of ours, only in its cgroup), and removes what
// they held on the host: the cgroups and the host end of the veth. The
// cluster's files stay.
func stopCluster(ctx context.Context, dir string) error {
	if err := killAll(ctx, dir); err != nil {
		return err
	}
	// A killed process drops out of processesOf once its leader has
	// released its memory (its command line reads empty), while its other
	// threads may still hold its files: wait for the supervisor's lock, or
	// a Restart right after would take the cluster for running.
	for flock.Held(filepath.Join(dir, supervisorLock)) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the supervisor's lock is still held after its processes were killed: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	names := namesFor(dir)
	if err := removeCgroup(ctx, names.Cgroup); err != nil {
		return err
	}
	if mayHaveRealNode(dir) {
		if err := teardownHostFirewall(ctx, names); err != nil {
			return fmt.Errorf("remove the cluster's firewall rules: %w", err)
		}
	}
	if err := teardownHostNetwork(ctx, names); err != nil {
		return fmt.Errorf("remove the cluster's network: %w", err)
	}
	return nil
}

// mayHaveRealNode tells whether the cluster in dir may have host network
// objects: its plan says it has a real node, or there is no readable plan
// (a create that died early).
func mayHaveRealNode(dir string) bool {
	var st clusterState
	if err := readJSON(filepath.Join(dir, clusterFile), &st); err != nil {
		return true
	}
	return st.Node != nil
}
