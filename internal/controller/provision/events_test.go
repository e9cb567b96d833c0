package provision

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
)

func TestAddonPhaseEvent(t *testing.T) {
	tcLabels := map[string]string{LabelServer: "s", LabelNamespace: "a", LabelTestCluster: "job", LabelTestClusterUID: "uid-job"}
	poolLabels := map[string]string{LabelServer: "s", LabelNamespace: "b", LabelPool: "ci", LabelPoolUID: "uid-ci"}
	// A pool cluster claimed later carries both: events go to the claim.
	claimed := map[string]string{LabelServer: "s", LabelNamespace: "b", LabelPool: "ci", LabelPoolUID: "uid-ci", LabelTestCluster: "job", LabelTestClusterUID: "uid-job"}
	phases := AddonsStatus{Phases: []string{"operators", "apps"}}
	pe := &addons.PhaseError{Phase: "apps", Item: "Deployment web/web", Reason: "not Available: pod web-x: CrashLoopBackOff"}
	type got struct {
		Kind, Namespace, Name string
		UID                   types.UID
		Type, Reason, Note    string
	}
	tests := []struct {
		name   string
		labels map[string]string
		ev     addons.PhaseEvent
		want   *got
	}{
		{"started, on the TestCluster", tcLabels, addons.PhaseEvent{Phase: "operators", Kind: addons.PhaseStarted},
			&got{"TestCluster", "a", "job", "uid-job", corev1.EventTypeNormal, ReasonAddonPhaseStarted, "cluster c: installing addons, phase operators (1 of 2)"}},
		{"ready, on the pool", poolLabels, addons.PhaseEvent{Phase: "apps", Kind: addons.PhaseReady, Duration: 12345 * time.Millisecond},
			&got{"ClusterPool", "b", "ci", "uid-ci", corev1.EventTypeNormal, ReasonAddonPhaseReady, "cluster c: addons phase apps (2 of 2) ready after 12.35s"}},
		{"failed, a warning", poolLabels, addons.PhaseEvent{Phase: "apps", Kind: addons.PhaseFailed, Duration: 10 * time.Minute, Err: pe},
			&got{"ClusterPool", "b", "ci", "uid-ci", corev1.EventTypeWarning, ReasonAddonPhaseFailed,
				"cluster c: addons phase apps (2 of 2) failed after 10m0s: phase apps: Deployment web/web not Available: pod web-x: CrashLoopBackOff"}},
		{"claimed pool cluster", claimed, addons.PhaseEvent{Phase: "other", Kind: addons.PhaseStarted},
			&got{"TestCluster", "b", "job", "uid-job", corev1.EventTypeNormal, ReasonAddonPhaseStarted, "cluster c: installing addons, phase other"}},
		{"a cluster of nobody", map[string]string{LabelServer: "s"}, addons.PhaseEvent{Phase: "apps", Kind: addons.PhaseStarted}, nil},
		{"an unknown kind", tcLabels, addons.PhaseEvent{Phase: "apps", Kind: "Sideways"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := AddonPhaseEvent(Status{Name: "c", Labels: tt.labels, Addons: phases}, tt.ev)
			if ok != (tt.want != nil) {
				t.Fatalf("ok = %t, want %t", ok, tt.want != nil)
			}
			if !ok {
				return
			}
			var kind string
			switch e.Regarding.(type) {
			case *v1alpha1.TestCluster:
				kind = "TestCluster"
			case *v1alpha1.ClusterPool:
				kind = "ClusterPool"
			}
			g := got{kind, e.Regarding.GetNamespace(), e.Regarding.GetName(), e.Regarding.GetUID(), e.Type, e.Reason, e.Note}
			if d := cmp.Diff(*tt.want, g); d != "" {
				t.Errorf("event (-want +got):\n%s", d)
			}
		})
	}
}
