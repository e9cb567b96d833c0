package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// BenchmarkClaimWarmPool times a claim from a warm pool until its
// kubeconfig is usable: create a TestCluster, watch it to Ready, read the
// kubeconfig Secret and list namespaces of the cluster with it. Each
// iteration claims `concurrency` clusters at once from a pool kept at that
// many Ready control-plane-only clusters, then gives them back and waits
// for the pool to refill (not timed). cli-1 claims through the CLI as a CI
// job does, `ephemera create testcluster --pool` (process start, create,
// wait, Secret, kubeconfig file written), then lists namespaces with the
// file it printed.
func BenchmarkClaimWarmPool(b *testing.B) {
	for _, concurrency := range []int{1, 20} {
		b.Run(fmt.Sprintf("concurrent-%d", concurrency), func(b *testing.B) {
			benchClaim(b, concurrency, false)
		})
	}
	b.Run("cli-1", func(b *testing.B) { benchClaim(b, 1, true) })
}

func benchClaim(b *testing.B, concurrency int, cli bool) {
	dir, err := os.MkdirTemp("", "ephemera-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	h := &harness{t: b, stateDir: dir}
	s := h.startServer()
	ctx := context.Background()
	c := s.client
	n := int32(concurrency)
	for _, obj := range []client.Object{template("bare", 0), pool("warm", "bare", n, n+2)} {
		if err := c.Create(ctx, obj); err != nil {
			b.Fatal(err)
		}
	}
	var all []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		waitPoolReadyB(ctx, b, s, "warm", n)
		b.StartTimer()
		ds := make([]time.Duration, concurrency)
		errs := make([]error, concurrency)
		var wg sync.WaitGroup
		for j := range concurrency {
			wg.Go(func() {
				name := fmt.Sprintf("claim-%d-%d", i, j)
				if cli {
					ds[j], errs[j] = claimUsableCLI(ctx, h, name)
					return
				}
				ds[j], errs[j] = claimUsable(ctx, c, name)
			})
		}
		wg.Wait()
		b.StopTimer()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		all = append(all, ds...)
		if err := c.DeleteAllOf(ctx, &v1alpha1.TestCluster{}, client.InNamespace("default")); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportDurations(b, "claim", all)
	if len(all) > 0 {
		b.ReportMetric(float64(percentile(all, 0.99).Milliseconds()), "claim-p99-ms")
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	return ds[int(p*float64(len(ds)-1)+0.5)]
}

func waitPoolReadyB(ctx context.Context, b *testing.B, s *server, name string, ready int32) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := waitFor(ctx, func() (bool, string) {
		p := &v1alpha1.ClusterPool{}
		if err := s.client.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, p); err != nil {
			return false, err.Error()
		}
		return p.Status.Ready >= ready && p.Status.Claimed == 0, fmt.Sprintf("%+v", p.Status)
	}); err != nil {
		b.Fatal(err)
	}
}

// claimUsable claims a cluster and returns how long until a request with
// its kubeconfig succeeded.
func claimUsable(ctx context.Context, c client.WithWatch, name string) (time.Duration, error) {
	start := time.Now()
	tc := claim(name, "warm")
	w, err := c.Watch(ctx, &v1alpha1.TestClusterList{}, client.InNamespace("default"), client.MatchingFields{"metadata.name": name})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	if err := c.Create(ctx, tc); err != nil {
		return 0, err
	}
	timeout := time.After(time.Minute)
	for tc.Status.Phase != v1alpha1.TestClusterReady {
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Added || ev.Type == watch.Modified {
				tc = ev.Object.(*v1alpha1.TestCluster)
			}
		case <-timeout:
			return 0, fmt.Errorf("%s not Ready after 1m: %+v", name, tc.Status)
		}
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: tc.Status.KubeconfigSecret}, secret); err != nil {
		return 0, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["kubeconfig"])
	if err != nil {
		return 0, err
	}
	if err := answers(ctx, cfg); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// claimUsableCLI claims a cluster with `ephemera create testcluster` and
// returns how long until a request with the kubeconfig it wrote succeeded.
func claimUsableCLI(ctx context.Context, h *harness, name string) (time.Duration, error) {
	start := time.Now()
	r := h.run(ctx, "create", "testcluster", name, "--pool", "warm", "--wait", "1m")
	if r.err != nil {
		return 0, fmt.Errorf("create testcluster %s: %s", name, r)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", strings.TrimSpace(r.stdout))
	if err != nil {
		return 0, err
	}
	if err := answers(ctx, cfg); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// answers succeeds once a request with cfg is served.
func answers(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	return err
}

// BenchmarkServeCycles runs create/delete cycles of control-plane-only
// clusters through one `ephemera serve` and checks that serve stays flat:
// each cycle creates a TestCluster of a template without nodes, watches it
// to Ready, deletes it and waits until it and every process of its cluster
// are gone. Every few cycles (25 at -benchtime 500x) it samples serve's
// RSS, Go heap in use, goroutines, open file descriptors, threads and
// processes (serve's descendants: the management plane, the supervisors of
// clusters and their components), and the processes of clusters left under
// the state dir. It logs the curve as a table, writes it as CSV to
// $EPHEMERA_BENCH_CURVE when set (after every sample, so a run cut short
// keeps its curve), and fails when something grows after the
// first 50 cycles (a tenth of the run when shorter) beyond a small
// tolerance, or when processes outlive their cluster. Run it with a fixed
// count:
//
//	go test -run '^$' -bench BenchmarkServeCycles -benchtime 500x -timeout 90m ./test/e2e/
func BenchmarkServeCycles(b *testing.B) {
	dir, err := os.MkdirTemp("", "ephemera-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	h := &harness{t: b, stateDir: dir}
	s := h.startServer("--runner-node=false")
	ctx := context.Background()
	if err := s.client.Create(ctx, template("bare", 0)); err != nil {
		b.Fatal(err)
	}
	every := sampleEvery()
	clustersDir := filepath.Join(dir, "clusters")
	curve := []serveSample{s.sample(0, clustersDir)}
	curvePath := os.Getenv("EPHEMERA_BENCH_CURVE")
	writeCurve := func() {
		if curvePath == "" {
			return
		}
		if err := os.WriteFile(curvePath, []byte(curveCSV(curve)), 0o644); err != nil {
			b.Error(err)
		}
	}
	var ready, gone []time.Duration
	cycles := 0
	for b.Loop() {
		r, g := s.cycle(ctx, b, fmt.Sprintf("cycle-%d", cycles), clustersDir)
		ready, gone = append(ready, r), append(gone, g)
		cycles++
		if cycles%every == 0 {
			b.StopTimer()
			curve = append(curve, s.sample(cycles, clustersDir))
			writeCurve()
			b.StartTimer()
		}
	}
	b.StopTimer()
	if curve[len(curve)-1].cycle != cycles {
		curve = append(curve, s.sample(cycles, clustersDir))
	}
	// Processes of deleted clusters take a moment to be reaped.
	last := &curve[len(curve)-1]
	for deadline := time.Now().Add(10 * time.Second); last.procs != curve[0].procs && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		*last = s.sample(cycles, clustersDir)
	}
	table := curveTable(curve)
	b.Logf("serve over %d create/delete cycles:\n%s", cycles, table)
	writeCurve()
	reportDurations(b, "ready", ready)
	reportDurations(b, "gone", gone)
	metrics, errs := checkFlat(curve)
	for name, v := range metrics {
		b.ReportMetric(v, name)
	}
	for _, err := range errs {
		b.Error(err)
	}
}

// sampleEvery is how many cycles lie between samples: 25, or fewer to get
// about 20 samples from a shorter -benchtime Nx.
func sampleEvery() int {
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return 25
	}
	n, err := strconv.Atoi(strings.TrimSuffix(f.Value.String(), "x"))
	if err != nil || !strings.HasSuffix(f.Value.String(), "x") {
		return 25
	}
	return min(25, max(1, n/20))
}

// cycle creates a TestCluster from the template "bare", waits until it is
// Ready, deletes it and waits until it is gone and no process of its cluster
// is left. It returns how long each half took.
func (s *server) cycle(ctx context.Context, b *testing.B, name, clustersDir string) (ready, gone time.Duration) {
	w, err := s.client.Watch(ctx, &v1alpha1.TestClusterList{}, client.InNamespace("default"), client.MatchingFields{"metadata.name": name})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	tc := &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       v1alpha1.TestClusterSpec{TemplateRef: "bare", TTL: &metav1.Duration{Duration: time.Hour}},
	}
	start := time.Now()
	if err := s.client.Create(ctx, tc); err != nil {
		b.Fatal(err)
	}
	timeout := time.After(5 * time.Minute)
	for tc.Status.Phase != v1alpha1.TestClusterReady {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("%s: the watch ended before Ready", name)
			}
			if ev.Type == watch.Added || ev.Type == watch.Modified {
				tc = ev.Object.(*v1alpha1.TestCluster)
			}
		case <-timeout:
			b.Fatalf("%s not Ready after 5m: %+v", name, tc.Status)
		}
	}
	ready = time.Since(start)
	cluster := tc.Spec.ClusterName
	start = time.Now()
	if err := s.client.Delete(ctx, tc); err != nil {
		b.Fatal(err)
	}
	timeout = time.After(time.Minute)
	for deleted := false; !deleted; {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("%s: the watch ended before the delete", name)
			}
			deleted = ev.Type == watch.Deleted
		case <-timeout:
			b.Fatalf("%s not gone 1m after its delete", name)
		}
	}
	clusterDir := filepath.Join(clustersDir, cluster)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitFor(wctx, func() (bool, string) {
		procs := processesUnder(clusterDir)
		_, err := os.Stat(clusterDir)
		return len(procs) == 0 && errors.Is(err, fs.ErrNotExist), fmt.Sprintf("cluster %s of %s: dir %v, processes %v", cluster, name, err, procs)
	}); err != nil {
		b.Fatal(err)
	}
	return ready, time.Since(start)
}
