package provision

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
)

// Reasons of the events about addon phases.
const (
	ReasonAddonPhaseStarted = "AddonPhaseStarted"
	ReasonAddonPhaseReady   = "AddonPhaseReady"
	ReasonAddonPhaseFailed  = "AddonPhaseFailed"
)

// Event is an event to record about a cluster.
type Event struct {
	// Regarding is the object the cluster is built for: its TestCluster,
	// or its pool (namespace, name and UID set).
	Regarding client.Object
	// Type is Normal or Warning.
	Type string
	// Reason is one of the ReasonAddonPhase constants.
	Reason string
	// Note says what happened, naming the cluster.
	Note string
}

// AddonPhaseEvent is the event of an addon phase of the cluster st, on the
// TestCluster or pool it is built for; false when its labels name neither.
func AddonPhaseEvent(st Status, ev addons.PhaseEvent) (Event, bool) {
	var obj client.Object
	switch l := st.Labels; {
	case l[LabelTestCluster] != "":
		tc := &v1alpha1.TestCluster{}
		tc.Namespace, tc.Name, tc.UID = l[LabelNamespace], l[LabelTestCluster], types.UID(l[LabelTestClusterUID])
		obj = tc
	case l[LabelPool] != "":
		p := &v1alpha1.ClusterPool{}
		p.Namespace, p.Name, p.UID = l[LabelNamespace], l[LabelPool], types.UID(l[LabelPoolUID])
		obj = p
	default:
		return Event{}, false
	}
	phase := "phase " + ev.Phase
	if i := slices.Index(st.Addons.Phases, ev.Phase); i >= 0 {
		phase += fmt.Sprintf(" (%d of %d)", i+1, len(st.Addons.Phases))
	}
	e := Event{Regarding: obj, Type: corev1.EventTypeNormal}
	switch ev.Kind {
	case addons.PhaseStarted:
		e.Reason, e.Note = ReasonAddonPhaseStarted, fmt.Sprintf("cluster %s: installing addons, %s", st.Name, phase)
	case addons.PhaseReady:
		e.Reason, e.Note = ReasonAddonPhaseReady, fmt.Sprintf("cluster %s: addons %s ready after %s", st.Name, phase, ev.Duration.Round(10*time.Millisecond))
	case addons.PhaseFailed:
		e.Type, e.Reason = corev1.EventTypeWarning, ReasonAddonPhaseFailed
		e.Note = fmt.Sprintf("cluster %s: addons %s failed after %s: %v", st.Name, phase, ev.Duration.Round(10*time.Millisecond), ev.Err)
	default:
		return Event{}, false
	}
	return e, true
}
