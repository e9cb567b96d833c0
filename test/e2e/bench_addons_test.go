package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkAddons times `create cluster -f` of the three-phase
// template (TestAddons's, with an operator that is Ready as soon as it
// serves): from starting the CLI to the last phase ready, the CLI's return.
// It reports the whole, the part before the addons (the cluster ready) and
// each phase as create printed it (installing and waiting until ready).
// The hello image comes from the local registry, pulled by the first phase
// and found on the node by the third.
func BenchmarkAddons(b *testing.B) {
	h := benchHarness(b)
	f := newAddonsFixture(b, h)
	tmpl := f.threePhases(b, 0)
	phases := []string{"operators", "resources", "apps"}
	var total, cluster []time.Duration
	perPhase := map[string][]time.Duration{}
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("addons-%d", i)
		start := time.Now()
		r := h.run(context.Background(), "create", "cluster", name, "-f", tmpl, "--label", "pr=1")
		took := time.Since(start)
		if r.err != nil {
			b.Fatalf("create: %s", r)
		}
		names, durations := phaseTimes(r.stderr)
		if !slices.Equal(names, phases) {
			b.Fatalf("create printed the ready phases %v, want %v:\n%s", names, phases, r.stderr)
		}
		total = append(total, took)
		rest := took
		for j, p := range names {
			perPhase[p] = append(perPhase[p], durations[j])
			rest -= durations[j]
		}
		cluster = append(cluster, rest)
		b.StopTimer()
		if r := h.run(context.Background(), "delete", "cluster", name); r.err != nil {
			b.Fatalf("delete: %s", r)
		}
		b.StartTimer()
	}
	reportDurations(b, "addons-ready", total)
	reportDurations(b, "cluster", cluster)
	for _, p := range phases {
		reportDurations(b, "phase-"+p, perPhase[p])
	}
}
