package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/ephemera-dev/ephemera/test/testhost"
)

// pullClusters is how many clusters BenchmarkRegistryPull pulls into.
const pullClusters = 5

// BenchmarkRegistryPull measures pulls of a 100 MB image (the hello image
// and a layer of 100 MiB of random bytes, new each iteration) from an
// upstream registry in a test host, through the host's registry cache,
// into five real-node clusters one after the other: the 1st pull fetches
// from the upstream, the others from the cache. It reports, for the 1st,
// 2nd and 5th cluster, the kubelet's pull time (its "Successfully pulled
// image ... in" event; p50 over iterations, in ms) and the bytes the
// upstream sent for blobs during that pull (MB, 10^6 bytes, the mean).
// The clusters are created before the timed loop; each iteration's push is
// not timed.
func BenchmarkRegistryPull(b *testing.B) {
	h := benchHarness(b)
	world := testhost.New(b, "upstream")
	up := world.ServeRegistry(b, testhost.RegistryOptions{})
	h.must("registry", "configure", "--registry-mirror", up.Host())
	var clients []kubernetes.Interface
	for i := 0; i < pullClusters; i += 2 {
		batch := map[string][]string{}
		for j := i; j < min(i+2, pullClusters); j++ {
			batch[fmt.Sprintf("pull-%d", j+1)] = []string{"--insecure-registry", up.Host()}
		}
		h.createClusters(batch)
	}
	for i := range pullClusters {
		clients = append(clients, h.clientFor(fmt.Sprintf("pull-%d", i+1)))
	}
	base := helloBase(b)

	pulls := make([][]time.Duration, pullClusters)
	upstreamMB := make([][]float64, pullClusters)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		ref := fmt.Sprintf("%s/bench/app:v%d", up.Host(), i)
		img := testhost.PushImage(b, up, ref, base, 100<<20)
		b.StartTimer()
		for j, cs := range clients {
			sent := up.BlobBytes()
			start := time.Now()
			p := startPullPod(b, cs, fmt.Sprintf("pull-%d", i), ref)
			p.mustRun(b)
			wall := time.Since(start)
			d := pulledIn(b, p)
			if d == 0 {
				b.Fatalf("cluster %d: no Pulled event for pod %s", j+1, p.name)
			}
			pulls[j] = append(pulls[j], d)
			upstreamMB[j] = append(upstreamMB[j], float64(up.BlobBytes()-sent)/1e6)
			b.Logf("iteration %d, cluster %d: pulled in %s (pod running after %s), %.1f MB from the upstream", i, j+1, d, wall, upstreamMB[j][len(upstreamMB[j])-1])
		}
		if n := up.BlobGets(lastLayer(b, img)); n != 1 {
			b.Errorf("iteration %d: the upstream sent the 100 MiB layer %d times, want once", i, n)
		}
	}
	for _, j := range []int{0, 1, pullClusters - 1} {
		ds := slices.Clone(pulls[j])
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Milliseconds()), fmt.Sprintf("pull-%s-p50-ms", ordinal(j+1)))
		var sum float64
		for _, mb := range upstreamMB[j] {
			sum += mb
		}
		b.ReportMetric(sum/float64(len(upstreamMB[j])), fmt.Sprintf("upstream-%s-MB", ordinal(j+1)))
	}
}

// pulledIn waits up to 5 s for the kubelet's Pulled event of the pod (it
// is sent asynchronously) and returns the pull time it reports, or 0.
func pulledIn(b *testing.B, p *pullPod) time.Duration {
	b.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if d := p.pulledIn(b); d > 0 || time.Now().After(deadline) {
			return d
		}
	}
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "1st"
	case 2:
		return "2nd"
	case 3:
		return "3rd"
	}
	return fmt.Sprintf("%dth", n)
}
