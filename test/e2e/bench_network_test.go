package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/test/testhost"
)

// BenchmarkCreateLoadBalancerReachable times what a CI job does to reach
// its app from outside a fresh cluster: `create cluster` (one real node),
// `load image` of examples/hello, `kubectl apply` of its Deployment and a
// LoadBalancer Service, then GETs from the host to the Service's address
// until one answers 200. It reports, each counted from the start of the
// create: created, image-loaded, applied, lb-address (the Service's
// status.loadBalancer.ingress seen, polled every 10 ms with client-go) and
// lb-200 (the first 200; a try whose connection is not set up in 200 ms is
// retried); then the delete.
func BenchmarkCreateLoadBalancerReachable(b *testing.B) {
	h := benchHarness(b)
	archive := hello.archiveFor(b)
	manifest := filepath.Join(b.TempDir(), "web.yaml")
	if err := os.WriteFile(manifest, []byte(helloLB), 0o644); err != nil {
		b.Fatal(err)
	}
	kubectl := strings.TrimSpace(h.must("kube", "path", "kubectl", "--version", newVersion).stdout)
	var created, loaded, applied, assigned, reached, del []time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("lb-%d", i)
		start := time.Now()
		h.must("create", "cluster", name)
		created = append(created, time.Since(start))
		h.must("load", "image", archive, "--cluster", name)
		loaded = append(loaded, time.Since(start))
		kubeconfig := []byte(h.must("get", "kubeconfig", name).stdout)
		kcFile := filepath.Join(b.TempDir(), "kubeconfig")
		if err := os.WriteFile(kcFile, kubeconfig, 0o600); err != nil {
			b.Fatal(err)
		}
		apply := osexec.Command(kubectl, "--kubeconfig", kcFile, "apply", "-f", manifest)
		var out strings.Builder
		apply.Stdout, apply.Stderr = &out, &out
		if err := runTracked(apply); err != nil {
			b.Fatalf("kubectl apply: %v\n%s", err, out.String())
		}
		applied = append(applied, time.Since(start))
		addr := waitServiceAddress(b, kubeconfig, "web")
		assigned = append(assigned, time.Since(start))
		waitHTTP200(b, "http://"+addr+"/", "hello from web-")
		reached = append(reached, time.Since(start))

		b.StopTimer()
		start = time.Now()
		h.must("delete", "cluster", name)
		del = append(del, time.Since(start))
		b.StartTimer()
	}
	reportDurations(b, "created", created)
	reportDurations(b, "image-loaded", loaded)
	reportDurations(b, "applied", applied)
	reportDurations(b, "lb-address", assigned)
	reportDurations(b, "lb-200", reached)
	reportDurations(b, "delete", del)
}

// waitServiceAddress polls a Service of the default namespace every 10 ms
// until it has a LoadBalancer address, and returns the address.
func waitServiceAddress(b *testing.B, kubeconfig []byte, name string) string {
	b.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		svc, err := cs.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil && len(svc.Status.LoadBalancer.Ingress) > 0 && svc.Status.LoadBalancer.Ingress[0].IP != "" {
			return svc.Status.LoadBalancer.Ingress[0].IP
		}
		select {
		case <-ctx.Done():
			b.Fatalf("Service %s has no LoadBalancer address after a minute (last error: %v)", name, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitHTTP200 GETs url from the host until it answers 200 with a body
// containing want, 10 ms after each failed try; a try whose connection is
// not set up within 200 ms (the address not routed or forwarded yet) has
// failed. It logs the number of tries and the first failure.
func waitHTTP200(b *testing.B, url, want string) {
	b.Helper()
	tries, first := 0, error(nil)
	tr := &http.Transport{DialContext: (&net.Dialer{Timeout: 200 * time.Millisecond}).DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		tries++
		resp, err := c.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				if !strings.Contains(string(body), want) {
					b.Fatalf("GET %s: 200 with %q, want %q in it", url, body, want)
				}
				b.Logf("GET %s: 200 at try %d; the first failed with: %v", url, tries, first)
				return
			}
			err = errors.New(resp.Status)
			if rerr != nil {
				err = fmt.Errorf("%s: %w", resp.Status, rerr)
			}
		}
		if first == nil {
			first = err
		}
		if time.Now().After(deadline) {
			b.Fatalf("GET %s: no 200 after 2 minutes: %v", url, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blobSize is the body the throughput benchmark downloads.
const blobSize = 256 << 20

// serveBlob answers any GET with blobSize generated bytes.
func serveBlob(w http.ResponseWriter, _ *http.Request) {
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	w.Header().Set("Content-Length", strconv.Itoa(blobSize))
	for range blobSize / len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// BenchmarkEgressThroughput measures the throughput of one HTTP download of
// 256 MiB (generated, served by the test process from a test host's
// network namespace) from the host and from a pod of a real-node cluster,
// whose traffic the host forwards and masquerades. Each iteration
// downloads once from each: the host with Go's HTTP client in the test
// process, the pod with `hello download` run by `kubectl exec` in a pod
// started once. It reports MB/s (10^6 bytes a second, timed by the client
// from the request to the last byte) as p50, min and max.
func BenchmarkEgressThroughput(b *testing.B) {
	h := benchHarness(b)
	world := testhost.New(b, "world")
	url := world.ServeHTTP(b, 0, http.HandlerFunc(serveBlob)).URL() + "/blob"
	h.must("create", "cluster", "egress")
	h.must("load", "image", hello.archiveFor(b), "--cluster", "egress")
	h.mustKubectl("egress", "run", "client", "--image="+helloImage, "--restart=Never", "--", "sleep")
	h.mustKubectl("egress", "wait", "pod/client", "--for=condition=Ready", "--timeout=60s")
	var fromHost, fromPod []float64
	for b.Loop() {
		fromHost = append(fromHost, hostDownload(b, url))
		out := h.mustKubectl("egress", "exec", "client", "--", "/hello", "download", url)
		var n int64
		var secs float64
		if _, err := fmt.Sscanf(out, "%d bytes in %f s", &n, &secs); err != nil || n != blobSize || secs <= 0 {
			b.Fatalf("hello download %s: want %d bytes and the seconds taken, got %q (%v)", url, blobSize, out, err)
		}
		fromPod = append(fromPod, float64(n)/secs/1e6)
	}
	reportRates(b, "host", fromHost)
	reportRates(b, "pod", fromPod)
	h.must("delete", "cluster", "egress")
}

// hostDownload downloads url once from the host on a new connection and
// returns MB/s.
func hostDownload(b *testing.B, url string) float64 {
	b.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Minute}
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != blobSize {
		b.Fatalf("GET %s from the host: %d bytes, want %d (%v)", url, n, blobSize, err)
	}
	return float64(n) / time.Since(start).Seconds() / 1e6
}

// reportRates reports rates in MB/s as p50, min and max.
func reportRates(b *testing.B, prefix string, rs []float64) {
	b.Helper()
	if len(rs) == 0 {
		return
	}
	b.ReportMetric(median(slices.Clone(rs)), prefix+"-p50-MB/s")
	b.ReportMetric(slices.Min(rs), prefix+"-min-MB/s")
	b.ReportMetric(slices.Max(rs), prefix+"-max-MB/s")
}
