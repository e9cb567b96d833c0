package local

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// observe derives a cluster's phase from what is true now: who holds its
// locks and what its supervisor last reported. Nothing written by an earlier
// command is trusted on its own.
func (p *Provider) observe(name, dir string) *provider.Cluster {
	c := &provider.Cluster{Name: name, Provider: Name}
	defer func() {
		if flock.Held(filepath.Join(dir, deleteLock)) {
			c.Phase, c.Message = provider.PhaseDeleting, "stopping its processes and removing its files"
		}
	}()
	_ = readJSON(filepath.Join(dir, labelsFile), &c.Labels)
	creating := flock.Held(filepath.Join(dir, createLock))
	var st clusterState
	if err := readJSON(filepath.Join(dir, clusterFile), &st); err != nil {
		if creating {
			c.Phase, c.Message = provider.PhaseCreating, "writing certificates and configuration"
		} else {
			c.Phase, c.Message = provider.PhaseBroken, "create was interrupted before the cluster was planned; delete it"
		}
		return c
	}
	c.KubernetesVersion = st.KubernetesVersion
	c.Endpoint = st.Endpoint
	c.KubeconfigPath = filepath.Join(dir, kubeconfigFile)
	c.CreatedAt = st.CreatedAt
	c.RealNodes = st.Spec.Nodes.RealCount()
	c.SimulatedNodes = st.Spec.Nodes.SimulatedCount()

	var ss supervisorStatus
	haveStatus := readJSON(filepath.Join(dir, statusFile), &ss) == nil
	for _, comp := range st.Components {
		cs := ss.Components[comp.Name]
		pc := provider.Component{
			Name:     comp.Name,
			Ready:    cs.Running && cs.Healthy,
			Restarts: cs.Restarts,
			Log:      filepath.Join(dir, logsDir, comp.Name+".log"),
		}
		switch {
		case pc.Ready:
		case !cs.Running && cs.LastExit != "":
			pc.Message = "not running: " + cs.LastExit
		case !cs.Running:
			pc.Message = "not started"
		default:
			pc.Message = "not healthy yet"
		}
		c.Components = append(c.Components, pc)
	}

	supervised := flock.Held(filepath.Join(dir, supervisorLock))
	switch {
	case !supervised && creating:
		c.Phase, c.Message = provider.PhaseCreating, "starting the supervisor"
	case !supervised:
		c.Phase = provider.PhaseBroken
		if haveStatus {
			c.Message = "its processes are gone (killed, or the host restarted); delete it"
		} else {
			c.Message = "create was interrupted before the cluster started; delete it"
		}
	case !haveStatus || ss.Phase == supervisorStarting:
		c.Phase, c.Message = provider.PhaseCreating, waitingFor(c.Components)
	case ss.Phase == supervisorFailed:
		c.Phase, c.Message = provider.PhaseBroken, ss.Message
	default:
		c.Phase = provider.PhaseRunning
		if msg := waitingFor(c.Components); msg != "" {
			c.Phase, c.Message = provider.PhaseBroken, msg
		}
	}
	return c
}

// waitingFor summarises the components that are not ready.
func waitingFor(cs []provider.Component) string {
	var parts []string
	for _, c := range cs {
		if !c.Ready {
			parts = append(parts, fmt.Sprintf("%s %s", c.Name, c.Message))
		}
	}
	return strings.Join(parts, "; ")
}
