package testcluster

import (
	"time"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// DefaultMaxHold caps how long past the last bind or heartbeat a hold keeps
// a cluster.
const DefaultMaxHold = 24 * time.Hour

// ExpiresAt returns when tc's lease ends. bound is when its cluster was
// bound, zero while it waits. The lease runs spec.ttl from the later of
// bind and the last heartbeat; a hold extends it to spec.holdUntil, at most
// maxHold past that same moment; nothing goes past creation + maxLifetime,
// which also ends a lease that never got a cluster.
func ExpiresAt(tc *v1alpha1.TestCluster, bound time.Time, maxHold time.Duration) time.Time {
	hard := tc.CreationTimestamp.Add(tc.Spec.MaxLifetimeOrDefault())
	if bound.IsZero() {
		return hard
	}
	last := bound
	if hb, ok := Heartbeat(tc); ok && hb.After(last) {
		last = hb
	}
	end := last.Add(tc.Spec.TTLOrDefault())
	if tc.Spec.HoldUntil != nil {
		hold := tc.Spec.HoldUntil.Time
		if limit := last.Add(maxHold); hold.After(limit) {
			hold = limit
		}
		if hold.After(end) {
			end = hold
		}
	}
	if end.After(hard) {
		end = hard
	}
	return end
}

// Heartbeat returns the time in tc's heartbeat annotation, if it has a
// valid one.
func Heartbeat(tc *v1alpha1.TestCluster) (time.Time, bool) {
	v, ok := tc.Annotations[v1alpha1.HeartbeatAnnotation]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}
