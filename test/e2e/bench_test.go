package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Benchmarks of the targets in docs/benchmarks.md. Each iteration creates a
// real cluster, so run them with a small fixed count:
//
//	go test -run '^$' -bench . -benchtime 10x ./test/e2e/
//
// They report percentiles as custom metrics; ns/op is the mean.

func reportDurations(b *testing.B, prefix string, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	pct := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1)+0.5)] }
	b.ReportMetric(float64(pct(0.5).Milliseconds()), prefix+"-p50-ms")
	b.ReportMetric(float64(pct(0.9).Milliseconds()), prefix+"-p90-ms")
	b.ReportMetric(float64(ds[0].Milliseconds()), prefix+"-min-ms")
	b.ReportMetric(float64(ds[len(ds)-1].Milliseconds()), prefix+"-max-ms")
}

// benchHarness is newHarness for a benchmark, with a short state dir (unix
// socket paths under it must stay short): when the benchmark ends it
// deletes every cluster and checks that nothing is left on the host.
func benchHarness(b *testing.B) *harness {
	dir, err := os.MkdirTemp("", "ephemera-bench-")
	if err != nil {
		b.Fatal(err)
	}
	h := &harness{t: b, stateDir: dir}
	before := snapshotHost()
	b.Cleanup(func() {
		if r := h.run(context.Background(), "delete", "cluster", "--all"); r.err != nil {
			b.Errorf("cleanup: delete --all: %s", r)
		}
		h.stopRegistry()
		h.assertNothingLeft()
		h.assertHostClean(before)
		os.RemoveAll(dir)
	})
	return h
}

// BenchmarkCreateAPIUsable times `create cluster --wait 0`: from starting
// the CLI to the API server accepting a namespace (the CLI returns then).
func BenchmarkCreateAPIUsable(b *testing.B) {
	benchCreateDelete(b, "api-usable", "delete-starting", nil, "--wait", "0")
}

// BenchmarkCreateReady times a default create with 3 simulated nodes: until
// every component is healthy, the nodes are Ready and pods can be created;
// then the delete of that Running cluster.
func BenchmarkCreateReady(b *testing.B) {
	benchCreateDelete(b, "ready", "delete", nil, "--simulated-nodes", "3")
}

// benchCreateDelete times `create cluster NAME createArgs...` and then, when
// set, use (the timed part), and the delete that follows, reporting both as
// percentiles.
func benchCreateDelete(b *testing.B, createMetric, deleteMetric string, use func(h *harness, name string), createArgs ...string) {
	h := benchHarness(b)
	var create, del []time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("%s-%d", createMetric, i)
		start := time.Now()
		if r := h.run(context.Background(), append([]string{"create", "cluster", name}, createArgs...)...); r.err != nil {
			b.Fatalf("create: %s", r)
		}
		if use != nil {
			use(h, name)
		}
		create = append(create, time.Since(start))
		b.StopTimer()
		start = time.Now()
		if r := h.run(context.Background(), "delete", "cluster", name); r.err != nil {
			b.Fatalf("delete: %s", r)
		}
		del = append(del, time.Since(start))
		b.StartTimer()
	}
	reportDurations(b, createMetric, create)
	reportDurations(b, deleteMetric, del)
}

// BenchmarkCreateFirstPodRunning times a default create (one real node,
// waiting until it is ready, cluster DNS included) followed by
// `kubectl run` of a pod and the wait until it is Running: from starting the
// CLI to the first pod of one's own running for real.
func BenchmarkCreateFirstPodRunning(b *testing.B) {
	benchCreateDelete(b, "first-pod-running", "delete", func(h *harness, name string) {
		// The pause image is in every real node already.
		if out, err := h.kubectl(newVersion, name, "run", "first", "--image=localhost/ephemera/pause:3.10", "--restart=Never"); err != nil {
			b.Fatalf("kubectl run: %v\n%s", err, out)
		}
		if out, err := h.kubectl(newVersion, name, "wait", "pod/first", "--for=jsonpath={.status.phase}=Running", "--timeout=60s"); err != nil {
			b.Fatalf("kubectl wait: %v\n%s", err, out)
		}
	})
}

// BenchmarkIdleMemory creates one cluster with 3 simulated nodes, lets it
// idle, and reports the memory of all its processes (supervisor included):
// the RSS sum, the PSS sum (shared pages split between sharers) and the
// anonymous (heap) part. Each iteration measures a fresh cluster.
func BenchmarkIdleMemory(b *testing.B) {
	benchIdleMemory(b, "--real-nodes", "0", "--simulated-nodes", "3")
}

// BenchmarkIdleMemoryRealNode is BenchmarkIdleMemory for a default cluster:
// one real node with CoreDNS, containerd shims and pause containers counted.
func BenchmarkIdleMemoryRealNode(b *testing.B) {
	benchIdleMemory(b)
}

func benchIdleMemory(b *testing.B, createArgs ...string) {
	h := benchHarness(b)
	idle := 20 * time.Second
	if s := os.Getenv("EPHEMERA_BENCH_IDLE"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			idle = d
		}
	}
	var rss, pss, anon []float64
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("mem-%d", i)
		if r := h.run(context.Background(), append([]string{"create", "cluster", name}, createArgs...)...); r.err != nil {
			b.Fatalf("create: %s", r)
		}
		time.Sleep(idle)
		m := clusterMemory(h.clusterDir(name))
		rss, pss, anon = append(rss, m["Rss"]), append(pss, m["Pss"]), append(anon, m["Anonymous"])
		if i == 0 {
			for comp, v := range m {
				if strings.HasPrefix(comp, "rss:") {
					b.ReportMetric(v, comp+"-MiB")
				}
			}
		}
		if r := h.run(context.Background(), "delete", "cluster", name); r.err != nil {
			b.Fatalf("delete: %s", r)
		}
	}
	b.ReportMetric(median(rss), "rss-MiB")
	b.ReportMetric(median(pss), "pss-MiB")
	b.ReportMetric(median(anon), "anon-MiB")
}

// clusterMemory sums smaps_rollup fields (MiB) over the cluster's processes
// and adds "rss:<comm>" per process.
func clusterMemory(dir string) map[string]float64 {
	out := map[string]float64{}
	for _, pid := range clusterPIDs(dir) {
		b, err := os.ReadFile(filepath.Join("/proc", pid, "smaps_rollup"))
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				continue
			}
			key := strings.TrimSuffix(f[0], ":")
			out[key] += kb / 1024
			if key == "Rss" {
				out["rss:"+strings.TrimSpace(string(comm))] += kb / 1024
			}
		}
	}
	return out
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}
