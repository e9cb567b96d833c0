package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/progress"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
)

// ManagementPlaneName is the local cluster that stores a server's objects
// in embedded mode.
const ManagementPlaneName = "management"

// managementPlaneWait bounds the wait for the management plane's
// controllers (the garbage collector deletes kubeconfig Secrets).
const managementPlaneWait = 2 * time.Minute

// renewCertificatesWithin is how long before they expire Ensure renews the
// management plane's certificates.
const renewCertificatesWithin = 30 * 24 * time.Hour

// ManagementPlane is the embedded management plane: a control-plane-only
// local cluster whose data dir persists across restarts of serve.
type ManagementPlane struct {
	// Provider keeps the management plane under the server's dir, apart
	// from the clusters it manages.
	Provider *local.Provider
	// KubeconfigPath is where its admin kubeconfig is written for the CLI
	// and kubectl.
	KubeconfigPath string
	// RunnerNode gives a new management plane a real node, where TestRun
	// Jobs run. A management plane made before keeps what it has.
	RunnerNode bool
}

// Ensure starts the management plane: it creates it the first time,
// restarts it on its data when its processes are gone (serve stopped it,
// or the host restarted), or adopts it when it runs already (serve was
// killed). Certificates that expire within 30 days are renewed first, and
// a running management plane is then restarted to load them. It returns
// the admin kubeconfig.
func (m *ManagementPlane) Ensure(ctx context.Context, rep progress.Reporter) ([]byte, error) {
	opts := lifecycle.CreateOptions{Wait: managementPlaneWait, Progress: rep}
	c, err := m.Provider.Get(ctx, ManagementPlaneName)
	if err == nil && (c.Phase == provider.PhaseRunning || c.Phase == provider.PhaseBroken) {
		err = m.renewCertificates(ctx, c, rep)
	}
	switch {
	case errors.Is(err, provider.ErrNotFound):
		realNodes, zero := int32(0), int32(0)
		if m.RunnerNode {
			realNodes = 1
		}
		spec := v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: &realNodes, Simulated: &zero}}
		_, err = lifecycle.Create(ctx, m.Provider, ManagementPlaneName, spec, opts)
	case err != nil:
	case c.Phase == provider.PhaseBroken:
		rep.Start("Restarting the management plane on its data")
		if err = m.Provider.Restart(ctx, ManagementPlaneName); err != nil {
			rep.End(false)
			break
		}
		rep.End(true)
		_, err = lifecycle.Adopt(ctx, m.Provider, ManagementPlaneName, opts)
	default:
		_, err = lifecycle.Adopt(ctx, m.Provider, ManagementPlaneName, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("start the management plane: %w", err)
	}
	kubeconfig, err := m.Provider.Kubeconfig(ctx, ManagementPlaneName)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(m.KubeconfigPath), 0o700); err != nil {
		return nil, err
	}
	tmp := m.KubeconfigPath + ".tmp"
	if err := os.WriteFile(tmp, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	return kubeconfig, os.Rename(tmp, m.KubeconfigPath)
}

// renewCertificates renews the management plane's certificates when they
// expire soon; a running one is stopped, and shows as Broken in c, so that
// Ensure restarts it on the new ones.
func (m *ManagementPlane) renewCertificates(ctx context.Context, c *provider.Cluster, rep progress.Reporter) error {
	renewed, err := m.Provider.RenewCertificates(ctx, ManagementPlaneName, renewCertificatesWithin)
	if err != nil || !renewed || c.Phase == provider.PhaseBroken {
		return err
	}
	rep.Start("Stopping the management plane to load its renewed certificates")
	if err := m.Provider.Stop(ctx, ManagementPlaneName); err != nil {
		rep.End(false)
		return err
	}
	rep.End(true)
	c.Phase = provider.PhaseBroken
	return nil
}

// GatewayAddress is the host address the management plane's node reaches
// directly (see Gateway); ok is false when it has no node.
func (m *ManagementPlane) GatewayAddress() (netip.Addr, bool, error) {
	return m.Provider.HostAddress(ManagementPlaneName)
}

// Stop stops the management plane's processes and keeps its data; the
// next Ensure restarts it.
func (m *ManagementPlane) Stop(ctx context.Context) error {
	_ = os.Remove(m.KubeconfigPath)
	return m.Provider.Stop(ctx, ManagementPlaneName)
}
