package provision

import (
	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// Labels a server puts on the clusters it creates, to find them again after
// a restart and to tell its own orphans from anyone else's clusters.
const (
	// LabelServer holds the server instance's name (serve --instance).
	LabelServer = "ephemera.dev/server"
	// LabelNamespace is the namespace of the owning pool or TestCluster.
	LabelNamespace = "ephemera.dev/namespace"
	// LabelPool and LabelPoolUID name the pool a warm cluster belongs to.
	LabelPool    = "ephemera.dev/pool"
	LabelPoolUID = "ephemera.dev/pool-uid"
	// LabelTestCluster and LabelTestClusterUID name the TestCluster a
	// cluster was built for from a template.
	LabelTestCluster    = "ephemera.dev/testcluster"
	LabelTestClusterUID = "ephemera.dev/testcluster-uid"
	// LabelAddons is AddonsPending on a cluster whose template has addons
	// until they are installed, then AddonsReady.
	LabelAddons = "ephemera.dev/addons"
)

// Values of LabelAddons.
const (
	AddonsPending = "pending"
	AddonsReady   = "ready"
)

// PoolLabels are the labels of a warm cluster of pool.
func PoolLabels(server string, pool *v1alpha1.ClusterPool) map[string]string {
	return map[string]string{
		LabelServer:    server,
		LabelNamespace: pool.Namespace,
		LabelPool:      pool.Name,
		LabelPoolUID:   string(pool.UID),
	}
}

// TestClusterLabels are the labels of a cluster built for tc.
func TestClusterLabels(server string, tc *v1alpha1.TestCluster) map[string]string {
	return map[string]string{
		LabelServer:         server,
		LabelNamespace:      tc.Namespace,
		LabelTestCluster:    tc.Name,
		LabelTestClusterUID: string(tc.UID),
	}
}
