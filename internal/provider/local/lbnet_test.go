package local

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestLastFreePrefix(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tt := range []struct {
		name string
		rng  string
		used []netip.Prefix
		want string // empty: none
	}{
		{name: "empty", rng: "10.251.0.0/16", want: "10.251.255.240/28"},
		{name: "last taken", rng: "10.251.0.0/16", used: []netip.Prefix{pfx("10.251.255.240/28")}, want: "10.251.255.224/28"},
		{name: "a route covers the top /24", rng: "10.251.0.0/16", used: []netip.Prefix{pfx("10.251.255.0/24")}, want: "10.251.254.240/28"},
		{name: "the range is one /28", rng: "10.9.9.0/28", want: "10.9.9.0/28"},
		{name: "full", rng: "10.9.9.0/27", used: []netip.Prefix{pfx("10.9.9.0/28"), pfx("10.9.9.16/28")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := lastFreePrefix(pfx(tt.rng), lbBits, tt.used)
			if tt.want == "" {
				if ok {
					t.Fatalf("lastFreePrefix = %v, want none", got)
				}
				return
			}
			if !ok || got != pfx(tt.want) {
				t.Fatalf("lastFreePrefix = %v, %v; want %s", got, ok, tt.want)
			}
		})
	}
}

// TestClusterLBRanges: the ranges of a state dir's plans, real-node and
// simulated-node clusters' alike, are taken; dirs without a readable plan
// hold none.
func TestClusterLBRanges(t *testing.T) {
	dir := t.TempDir()
	plans := map[string]clusterState{
		"real": {Name: "real", Node: &realNode{LB: netip.MustParsePrefix("10.251.0.0/28")}},
		"sim":  {Name: "sim", LB: netip.MustParsePrefix("10.251.255.240/28")},
		"bare": {Name: "bare"},
	}
	for name, st := range plans {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeJSON(filepath.Join(dir, name, clusterFile), st); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "creating"), 0o755); err != nil {
		t.Fatal(err)
	}
	got := clusterLBRanges(dir)
	want := []netip.Prefix{netip.MustParsePrefix("10.251.0.0/28"), netip.MustParsePrefix("10.251.255.240/28")}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b netip.Prefix) bool { return a.String() < b.String() }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("clusterLBRanges (-want +got):\n%s", diff)
	}
}
