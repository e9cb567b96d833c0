package local

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// Files in a cluster's state dir.
const (
	clusterFile       = "cluster.json"    // the plan: spec, ports, component commands
	statusFile        = "status.json"     // written by the supervisor
	createLock        = "create.lock"     // held by the process running Create
	deleteLock        = "delete.lock"     // held by the process running Delete
	supervisorPIDFile = "supervisor.pid"  // the session id of the cluster's processes
	supervisorLock    = "supervisor.lock" // held by the supervisor while it lives
	kubeconfigFile    = "kubeconfig"      // admin kubeconfig
	labelsFile        = "labels.json"     // the labels given at create
	logsDir           = "logs"
	pkiDir            = "pki"
)

// clusterState is the plan of a cluster, written once by Create and read by
// the supervisor and every later command.
type clusterState struct {
	Name              string                       `json:"name"`
	KubernetesVersion string                       `json:"kubernetesVersion"`
	Spec              v1alpha1.ClusterTemplateSpec `json:"spec"`
	CreatedAt         time.Time                    `json:"createdAt"`
	Endpoint          string                       `json:"endpoint"`
	// Ports are on 127.0.0.1 of the host, or of the cluster's network
	// namespace when it has a real node.
	Ports ports `json:"ports"`
	// Node is the real node's plan, when the cluster has one.
	Node *realNode `json:"node,omitempty"`
	// Advertise is how other machines reach the API server, when the
	// provider advertises an address (see advertise.go).
	Advertise *advertised `json:"advertise,omitempty"`
	// LB is the LoadBalancer range of a cluster with simulated nodes only
	// (a real node's is Node.LB): its Services' addresses show in their
	// status and lead nowhere. Clusters made before it existed have none.
	LB netip.Prefix `json:"lb,omitzero"`
	// Components are started by the supervisor in stage order.
	Components []component `json:"components"`
}

// lbRange is the cluster's LoadBalancer range, the zero Prefix when it
// has none.
func (st clusterState) lbRange() netip.Prefix {
	if st.Node != nil {
		return st.Node.LB
	}
	return st.LB
}

// ports are the host ports a cluster listens on, all on 127.0.0.1.
type ports struct {
	EtcdClient        int `json:"etcdClient"`
	EtcdPeer          int `json:"etcdPeer"`
	APIServer         int `json:"apiServer"`
	ControllerManager int `json:"controllerManager"`
	Scheduler         int `json:"scheduler"`
	Kwok              int `json:"kwok"`
}

func (p ports) all() []int {
	return []int{p.EtcdClient, p.EtcdPeer, p.APIServer, p.ControllerManager, p.Scheduler, p.Kwok}
}

// component is one supervised process.
type component struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
	// Env is added to the supervisor's environment.
	Env []string `json:"env,omitempty"`
	// Health is a URL that answers 200 when the component is up.
	Health string `json:"health,omitempty"`
	// Stage says when the component starts (see the stage constants).
	Stage int `json:"stage"`
}

// When components start.
const (
	// stageAtOnce: when the supervisor starts.
	stageAtOnce = 0
	// stageAfterAPI: once the API server is usable (and a real node's
	// images are in its containerd).
	stageAfterAPI = 1
)

// supervisorStatus is what the supervisor reports about the cluster.
type supervisorStatus struct {
	PID        int                        `json:"pid"`
	Phase      string                     `json:"phase"`
	Message    string                     `json:"message,omitempty"`
	StartedAt  time.Time                  `json:"startedAt"`
	APIReadyAt *time.Time                 `json:"apiReadyAt,omitempty"`
	ReadyAt    *time.Time                 `json:"readyAt,omitempty"`
	Components map[string]componentStatus `json:"components"`
}

// Supervisor phases.
const (
	supervisorStarting = "Starting"
	supervisorRunning  = "Running"
	supervisorFailed   = "Failed"
)

type componentStatus struct {
	PID      int  `json:"pid,omitempty"`
	Running  bool `json:"running"`
	Healthy  bool `json:"healthy"`
	Restarts int  `json:"restarts"`
	// Failures counts the health checks failed in a row (not running
	// counts as failed); a healthy check resets it.
	Failures int    `json:"failures,omitempty"`
	LastExit string `json:"lastExit,omitempty"`
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// writeJSON replaces path atomically so readers never see half a file.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
