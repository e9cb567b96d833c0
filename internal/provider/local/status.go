package local

import (
	"fmt"
	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"path/filepath"
	"strings"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// brokenAfterFailures is how many health checks in a row a component must
// fail before its cluster is Broken. Fewer, or a component being
// restarted, leave the cluster Running with a message saying what is
// degraded: one slow probe on a loaded host is not a broken cluster.
const brokenAfterFailures = 3

// observation is what observe reads of a cluster dir now.
type observation struct {
	// deleting, creating and supervised say who holds the delete, create
	// and supervisor locks.
	deleting, creating, supervised bool
	// planned says whether cluster.json could be read.
	planned bool
	// status is the supervisor's last report, nil when there is none.
	status *supervisorStatus
	// components are the planned components as the status reports them.
	components []provider.Component
}

// observe derives a cluster's phase from what is true now: who holds its
// locks and what its supervisor last reported. Nothing written by an earlier
// command is trusted on its own.
func (p *Provider) observe(name, dir string) *provider.Cluster {
	c := &provider.Cluster{Name: name, Provider: Name}
	_ = readJSON(filepath.Join(dir, labelsFile), &c.Labels)
	var o observation
	o.creating = flock.Held(filepath.Join(dir, createLock))
	var st clusterState
	if readJSON(filepath.Join(dir, clusterFile), &st) == nil {
		o.planned = true
		c.KubernetesVersion = st.KubernetesVersion
		c.Endpoint = st.Endpoint
		c.KubeconfigPath = filepath.Join(dir, kubeconfigFile)
		c.CreatedAt = st.CreatedAt
		c.RealNodes = st.Spec.Nodes.RealCount()
		c.SimulatedNodes = st.Spec.Nodes.SimulatedCount()
		if n := st.Node; n != nil && n.LB.IsValid() {
			c.Ingress = &v1alpha1.IngressStatus{Address: ingressAddress(n.LB).String(), Domain: n.IngressDomain}
			c.Ports = MappingsToAPI(n.HostPorts)
		}
		var ss supervisorStatus
		if readJSON(filepath.Join(dir, statusFile), &ss) == nil {
			o.status = &ss
		}
		c.Components = componentsOf(dir, st.Components, o.status)
		o.components = c.Components
		o.supervised = flock.Held(filepath.Join(dir, supervisorLock))
	}
	// Looked at last: a delete that began meanwhile wins.
	o.deleting = flock.Held(filepath.Join(dir, deleteLock))
	c.Phase, c.Message = phaseOf(o)
	return c
}

// componentsOf reports the planned components as the supervisor's status
// (nil when there is none) last saw them.
func componentsOf(dir string, planned []component, ss *supervisorStatus) []provider.Component {
	var out []provider.Component
	for _, comp := range planned {
		var cs componentStatus
		if ss != nil {
			cs = ss.Components[comp.Name]
		}
		pc := provider.Component{
			Name:     comp.Name,
			Ready:    cs.Running && cs.Healthy,
			Restarts: cs.Restarts,
			Failures: cs.Failures,
			Log:      filepath.Join(dir, logsDir, comp.Name+".log"),
		}
		switch {
		case pc.Ready:
		case !cs.Running && cs.LastExit != "":
			pc.Message = "not running: " + cs.LastExit
		case !cs.Running:
			pc.Message = "not started"
		case cs.Failures > 0:
			pc.Message = fmt.Sprintf("not healthy (%d failed health checks in a row)", cs.Failures)
		default:
			pc.Message = "not healthy yet"
		}
		out = append(out, pc)
	}
	return out
}

// phaseOf derives a cluster's phase and message from an observation. A
// cluster is Broken when its processes are gone (nobody holds the
// supervisor lock and nobody is creating it), when its supervisor reports
// a failed start-up, or when a component failed brokenAfterFailures health
// checks in a row. A component that failed fewer, or is being restarted,
// leaves it Running, with a message naming what is degraded.
func phaseOf(o observation) (provider.Phase, string) {
	switch {
	case o.deleting:
		return provider.PhaseDeleting, "stopping its processes and removing its files"
	case !o.planned && o.creating:
		return provider.PhaseCreating, "writing certificates and configuration"
	case !o.planned:
		return provider.PhaseBroken, "create was interrupted before the cluster was planned; delete it"
	case !o.supervised && o.creating:
		return provider.PhaseCreating, "starting the supervisor"
	case !o.supervised && o.status != nil:
		return provider.PhaseBroken, "its processes are gone (killed, or the host restarted); delete it"
	case !o.supervised:
		return provider.PhaseBroken, "create was interrupted before the cluster started; delete it"
	case o.status == nil || o.status.Phase == supervisorStarting:
		return provider.PhaseCreating, waitingFor(o.components)
	case o.status.Phase == supervisorFailed:
		return provider.PhaseBroken, o.status.Message
	}
	var failed []string
	for _, c := range o.components {
		if c.Failures >= brokenAfterFailures {
			failed = append(failed, fmt.Sprintf("%s failed %d health checks in a row (%s)", c.Name, c.Failures, c.Message))
		}
	}
	if len(failed) > 0 {
		return provider.PhaseBroken, strings.Join(failed, "; ")
	}
	if msg := waitingFor(o.components); msg != "" {
		return provider.PhaseRunning, "degraded: " + msg
	}
	return provider.PhaseRunning, ""
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
