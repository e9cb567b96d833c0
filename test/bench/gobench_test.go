package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/ephemera-dev/ephemera/test/e2e
cpu: AMD EPYC
BenchmarkClaimWarmPool/concurrent-1-2         	       1	 217779474 ns/op	       217.0 claim-max-ms	       217.0 claim-min-ms	       217.0 claim-p50-ms	       217.0 claim-p90-ms	       217.0 claim-p99-ms
BenchmarkClaimWarmPool/concurrent-20-2        	       3	 642129956 ns/op	       642.0 claim-max-ms	       451.0 claim-min-ms	       564.0 claim-p50-ms
--- FAIL: BenchmarkOther
Benchmark text that is not a result
PASS
ok  	github.com/ephemera-dev/ephemera/test/e2e	133.437s
`
	got := parseGoBench(out, 2)
	want := []goBench{
		{Name: "BenchmarkClaimWarmPool/concurrent-1", N: 1, Metrics: map[string]float64{
			"ns/op": 217779474, "claim-max-ms": 217, "claim-min-ms": 217, "claim-p50-ms": 217, "claim-p90-ms": 217, "claim-p99-ms": 217}},
		{Name: "BenchmarkClaimWarmPool/concurrent-20", N: 3, Metrics: map[string]float64{
			"ns/op": 642129956, "claim-max-ms": 642, "claim-min-ms": 451, "claim-p50-ms": 564}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if _, ok := findGoBench(got, "BenchmarkClaimWarmPool/concurrent-20"); !ok {
		t.Error("findGoBench did not find concurrent-20")
	}
	if _, ok := findGoBench(got, "BenchmarkClaimWarmPool/concurrent-2"); ok {
		t.Error("findGoBench matched a prefix")
	}
}

func TestParseGoBenchOneProc(t *testing.T) {
	// With GOMAXPROCS 1 there is no suffix, and a name ending in digits
	// stays whole.
	got := parseGoBench("BenchmarkClaimWarmPool/concurrent-20 \t 1 \t 5 ns/op\n", 1)
	if len(got) != 1 || got[0].Name != "BenchmarkClaimWarmPool/concurrent-20" {
		t.Errorf("got %+v", got)
	}
}
