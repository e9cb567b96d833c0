// Package failpoint kills the process at named points of the server, when
// the environment asks for it, so that tests can check what a crash at
// each point leaves behind.
package failpoint

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// EnvVar lists the armed failpoints, comma-separated: NAME kills at the
// first hit, NAME@N at the Nth.
const EnvVar = "EPHEMERA_FAILPOINTS"

// The failpoints, at the points of `ephemera serve` where a crash is most
// likely to leave something half done.
const (
	// ServeBeforeLoad: serve holds the state dir's lock and runs its
	// controllers, and has not yet found the clusters of an earlier server.
	ServeBeforeLoad = "serve/before-load"
	// ProvisionAdopting: a cluster found at start-up is being adopted
	// (restarted on its data if its processes are gone, then checked).
	ProvisionAdopting = "provision/adopting"
	// ProvisionAfterCreate: a new cluster is up and labelled, and not yet
	// recorded Ready.
	ProvisionAfterCreate = "provision/after-create"
	// LocalDeleteAfterStop: a delete stopped the cluster's processes and
	// removed its cgroup and network, and has not removed its dir.
	LocalDeleteAfterStop = "local/delete-after-stop"
	// AdmissionAfterClaim: a pool cluster's labels record its claim, and
	// the claim's spec.clusterName is not yet set.
	AdmissionAfterClaim = "admission/after-claim"
	// AdmissionPoolCreate: a pool member has just been handed to the
	// provisioner; more may follow in the same pass.
	AdmissionPoolCreate = "admission/pool-create"
	// TestClusterBeforeSecret: a TestCluster is bound to a Ready cluster,
	// and its kubeconfig Secret is not yet written.
	TestClusterBeforeSecret = "testcluster/before-secret"
	// TestClusterBeforeReady: the kubeconfig Secret is written, and the
	// TestCluster's status does not yet say Ready.
	TestClusterBeforeReady = "testcluster/before-ready"
	// TestClusterBeforeUnfinalize: a deleted TestCluster's cluster and
	// Secret are gone, and its finalizer is not yet removed.
	TestClusterBeforeUnfinalize = "testcluster/before-unfinalize"
	// ReaperAfterDelete: the reaper deleted an orphaned cluster, and has
	// not looked at the next one.
	ReaperAfterDelete = "reaper/after-delete"
)

// All lists every failpoint.
var All = []string{
	ServeBeforeLoad, ProvisionAdopting, ProvisionAfterCreate, LocalDeleteAfterStop,
	AdmissionAfterClaim, AdmissionPoolCreate,
	TestClusterBeforeSecret, TestClusterBeforeReady, TestClusterBeforeUnfinalize,
	ReaperAfterDelete,
}

// armed maps each armed failpoint to the hit that kills and the hits so
// far; nil when none is. The environment is read once, when the program
// starts.
var armed = parse(os.Getenv(EnvVar))

type point struct {
	at   int64
	hits atomic.Int64
}

// Inject kills the process with SIGKILL, as a crash would, when the
// failpoint name is armed and this is the hit it is armed for. It costs
// one length check when nothing is armed.
func Inject(name string) {
	if len(armed) == 0 {
		return
	}
	p, ok := armed[name]
	if !ok || p.hits.Add(1) != p.at {
		return
	}
	fmt.Fprintf(os.Stderr, "failpoint %s: killing the process\n", name)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way; nothing more may run
}

// parse reads a list of armed failpoints (see EnvVar). An entry it cannot
// read, or a name it does not know, is reported on stderr and ignored.
func parse(s string) map[string]*point {
	var out map[string]*point
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, nth, hasN := strings.Cut(entry, "@")
		at := int64(1)
		if hasN {
			n, err := strconv.ParseInt(nth, 10, 64)
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "%s: %q: want NAME or NAME@N with N at least 1; ignored\n", EnvVar, entry)
				continue
			}
			at = n
		}
		if !slices.Contains(All, name) {
			fmt.Fprintf(os.Stderr, "%s: no failpoint %q (there are %s); ignored\n", EnvVar, name, strings.Join(All, ", "))
			continue
		}
		if out == nil {
			out = map[string]*point{}
		}
		out[name] = &point{at: at}
	}
	return out
}
