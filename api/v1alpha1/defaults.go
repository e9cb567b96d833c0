package v1alpha1

// DefaultSimulatedNodes is the number of simulated nodes when a spec asks
// for none explicitly.
const DefaultSimulatedNodes int32 = 1

// SimulatedCount returns the number of simulated nodes asked for, applying
// the default.
func (n NodesSpec) SimulatedCount() int32 {
	if n.Simulated == nil {
		return DefaultSimulatedNodes
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
