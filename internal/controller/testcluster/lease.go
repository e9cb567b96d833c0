package testcluster

import (
	"fmt"
	"strings"
	"time"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// Default server caps on leases.
const (
	// DefaultMaxHold caps how long past the last bind or heartbeat a hold
	// keeps a cluster.
	DefaultMaxHold = 24 * time.Hour
	// DefaultMaxTTL caps spec.ttl.
	DefaultMaxTTL = 24 * time.Hour
	// DefaultMaxLifetime caps spec.maxLifetime.
	DefaultMaxLifetime = 72 * time.Hour
)

// Limits are the server's caps on every lease, whatever its spec asks.
type Limits struct {
	// MaxHold caps a hold past the later of bind and heartbeat.
	MaxHold time.Duration
	// MaxTTL caps spec.ttl.
	MaxTTL time.Duration
	// MaxLifetime caps spec.maxLifetime.
	MaxLifetime time.Duration
}

// DefaultLimits are the caps serve applies unless told otherwise.
var DefaultLimits = Limits{MaxHold: DefaultMaxHold, MaxTTL: DefaultMaxTTL, MaxLifetime: DefaultMaxLifetime}

func (l Limits) orDefault() Limits {
	if l.MaxHold <= 0 {
		l.MaxHold = DefaultMaxHold
	}
	if l.MaxTTL <= 0 {
		l.MaxTTL = DefaultMaxTTL
	}
	if l.MaxLifetime <= 0 {
		l.MaxLifetime = DefaultMaxLifetime
	}
	return l
}

// ExpiresAt returns when tc's lease ends, and which of the server's caps
// shortened it (empty when none did). bound is when its cluster was bound,
// zero while it waits. The lease runs spec.ttl (at most MaxTTL) from the
// later of bind and the last heartbeat; a hold extends it to
// spec.holdUntil, at most MaxHold past that same moment; nothing goes past
// creation + maxLifetime (at most MaxLifetime), which also ends a lease
// that never got a cluster.
func ExpiresAt(tc *v1alpha1.TestCluster, bound time.Time, limits Limits) (time.Time, []string) {
	limits = limits.orDefault()
	var capped []string
	lifetime := tc.Spec.MaxLifetimeOrDefault()
	if lifetime > limits.MaxLifetime {
		capped = append(capped, fmt.Sprintf("spec.maxLifetime %s is capped at the server's --max-lifetime %s", lifetime, limits.MaxLifetime))
		lifetime = limits.MaxLifetime
	}
	hard := tc.CreationTimestamp.Add(lifetime)
	if bound.IsZero() {
		return hard, capped
	}
	last := bound
	if hb, ok := Heartbeat(tc); ok && hb.After(last) {
		last = hb
	}
	ttl := tc.Spec.TTLOrDefault()
	if ttl > limits.MaxTTL {
		capped = append(capped, fmt.Sprintf("spec.ttl %s is capped at the server's --max-ttl %s", ttl, limits.MaxTTL))
		ttl = limits.MaxTTL
	}
	end := last.Add(ttl)
	if tc.Spec.HoldUntil != nil {
		hold := tc.Spec.HoldUntil.Time
		if limit := last.Add(limits.MaxHold); hold.After(limit) {
			capped = append(capped, fmt.Sprintf("spec.holdUntil is capped at the server's --max-hold %s past the last bind or heartbeat", limits.MaxHold))
			hold = limit
		}
		if hold.After(end) {
			end = hold
		}
	}
	if end.After(hard) {
		end = hard
	}
	return end, capped
}

// setCapped records on tc which caps shortened its lease.
func setCapped(tc *v1alpha1.TestCluster, capped []string) {
	if len(capped) == 0 {
		setCondition(tc, v1alpha1.ConditionLeaseCapped, false, "WithinLimits", "the lease is as the spec asks")
		return
	}
	setCondition(tc, v1alpha1.ConditionLeaseCapped, true, "Capped", strings.Join(capped, "; "))
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
