package reaper

import (
	"slices"
	"testing"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/fake"
)

// TestSweep runs the reaper against controller-runtime's fake client and a
// fake provider: which clusters are orphans, and a failed delete does not
// stop the sweep.
func TestSweep(t *testing.T) {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	live := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "live", UID: "uid-live"}}
	pool := &v1alpha1.ClusterPool{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "ci", UID: "uid-pool"}}
	c := fakeclient.NewClientBuilder().WithScheme(s).WithObjects(live, pool).Build()
	labels := func(kv ...string) map[string]string {
		m := map[string]string{provision.LabelServer: "s"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cl := func(name string, l map[string]string) provider.Cluster {
		return provider.Cluster{Name: name, Phase: provider.PhaseRunning, Labels: l}
	}
	p := fake.New(
		cl("owned", labels(provision.LabelTestClusterUID, "uid-live")),
		cl("orphan-1", labels(provision.LabelTestClusterUID, "uid-gone")),
		cl("orphan-2", labels(provision.LabelTestClusterUID, "uid-gone-too")),
		cl("spare", labels(provision.LabelPoolUID, "uid-pool")),
		cl("claimed", labels(provision.LabelPoolUID, "uid-pool", provision.LabelTestClusterUID, "uid-live")),
		cl("claim-gone", labels(provision.LabelPoolUID, "uid-pool", provision.LabelTestClusterUID, "uid-gone")),
		cl("pool-gone", labels(provision.LabelPoolUID, "uid-old-pool")),
		cl("bystander", map[string]string{"team": "x"}),
		cl("other-server", map[string]string{provision.LabelServer: "t"}),
	)
	p.FailDeletes(1) // the first delete fails: the sweep goes on
	prov := provision.New(p, provision.Options{Log: logr.Discard()})
	r := &Reaper{Reader: c, Provisioner: prov, Server: "s", Log: logr.Discard()}
	reaped, err := r.Sweep(t.Context())
	if err == nil {
		t.Error("a failed delete was not reported")
	}
	if want := []string{"orphan-1", "orphan-2", "pool-gone"}; !slices.Equal(reaped, want) {
		t.Errorf("first sweep reaped %v, want %v (claim-gone's delete failed, the rest went on)", reaped, want)
	}
	// The failed one is tried again.
	reaped, err = r.Sweep(t.Context())
	if err != nil || !slices.Equal(reaped, []string{"claim-gone"}) {
		t.Errorf("second sweep reaped %v (%v), want [claim-gone]", reaped, err)
	}
	for _, keep := range []string{"owned", "spare", "claimed", "bystander", "other-server"} {
		if !p.Has(keep) {
			t.Errorf("reaped %s, which is owned or not this server's", keep)
		}
	}
}
