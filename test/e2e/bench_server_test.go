package e2e

import (
	"context"
	"fmt"
	"os"
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
