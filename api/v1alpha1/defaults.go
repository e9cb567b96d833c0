package v1alpha1

import "time"

// DefaultRealNodes is the number of real nodes when a spec sets neither
// node count.
const DefaultRealNodes int32 = 1

// RealCount returns the number of real nodes asked for, applying the
// default: one real node when neither count is set, none otherwise.
func (n NodesSpec) RealCount() int32 {
	if n.Real != nil {
		return *n.Real
	}
	if n.Simulated == nil {
		return DefaultRealNodes
	}
	return 0
}

// SimulatedCount returns the number of simulated nodes asked for: 0 unless
// set.
func (n NodesSpec) SimulatedCount() int32 {
	if n.Simulated == nil {
		return 0
	}
	return *n.Simulated
}

// ProviderOrDefault returns the provider asked for, or local.
func (s ClusterTemplateSpec) ProviderOrDefault() ProviderName {
	if s.Provider == "" {
		return ProviderLocal
	}
	return s.Provider
}

// TTLOrDefault returns spec.ttl, or DefaultTTL when unset.
func (s TestClusterSpec) TTLOrDefault() time.Duration {
	if s.TTL == nil || s.TTL.Duration <= 0 {
		return DefaultTTL
	}
	return s.TTL.Duration
}

// MaxLifetimeOrDefault returns spec.maxLifetime, or DefaultMaxLifetime when
// unset.
func (s TestClusterSpec) MaxLifetimeOrDefault() time.Duration {
	if s.MaxLifetime == nil || s.MaxLifetime.Duration <= 0 {
		return DefaultMaxLifetime
	}
	return s.MaxLifetime.Duration
}

// HeartbeatValue is the value of HeartbeatAnnotation for a heartbeat at t.
func HeartbeatValue(t time.Time) string { return t.UTC().Format(time.RFC3339) }
