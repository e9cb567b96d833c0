package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
	ephemeraserver "github.com/ephemera-dev/ephemera/internal/server"
)

func ptr[T any](v T) *T { return &v }

func template(name string, simulated int32) *v1alpha1.ClusterTemplate {
	return &v1alpha1.ClusterTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1alpha1.ClusterTemplateSpec{
			KubernetesVersion: newVersion,
			Nodes:             v1alpha1.NodesSpec{Real: ptr(int32(0)), Simulated: ptr(simulated)},
		},
	}
}

func pool(name, tmpl string, minReady, maxSize int32) *v1alpha1.ClusterPool {
	return &v1alpha1.ClusterPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       v1alpha1.ClusterPoolSpec{TemplateRef: tmpl, MinReady: &minReady, MaxSize: &maxSize},
	}
}

func claim(name, poolName string) *v1alpha1.TestCluster {
	return &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       v1alpha1.TestClusterSpec{PoolRef: poolName, TTL: &metav1.Duration{Duration: time.Hour}},
	}
}

// poolClusters returns the provider's clusters of a pool, by name.
func (h *harness) poolClusters(poolName string) []string {
	var out []string
	for name := range h.clusters() {
		if strings.HasPrefix(name, poolName+"-") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (s *server) waitPoolReady(ctx context.Context, t *testing.T, name string, ready int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := waitFor(ctx, func() (bool, string) {
		p := &v1alpha1.ClusterPool{}
		if err := s.client.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, p); err != nil {
			return false, err.Error()
		}
		return p.Status.Ready >= ready, fmt.Sprintf("pool %s: %+v", name, p.Status)
	}); err != nil {
		t.Fatalf("pool %s never had %d Ready clusters: %v", name, ready, err)
	}
}

func (s *server) getTC(ctx context.Context, name string) (*v1alpha1.TestCluster, error) {
	tc := &v1alpha1.TestCluster{}
	return tc, s.client.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, tc)
}

func (s *server) waitGone(ctx context.Context, t *testing.T, obj client.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitFor(ctx, func() (bool, string) {
		err := s.client.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		return apierrors.IsNotFound(err), fmt.Sprintf("%s still exists (err %v)", obj.GetName(), err)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestServer runs one server through its life: bad input, a pool filling,
// claims, leases, a template request, a burst of concurrent claims on a
// small pool, the reaper, and a restart after SIGKILL mid-provisioning.
func TestServer(t *testing.T) {
	h := newHarness(t)
	s := h.startServer("--max-hold", "4h", "--max-clusters", "12")
	ctx := t.Context()
	c := s.client
	for _, obj := range []client.Object{template("sim", 1), template("bare", 0), pool("ci", "sim", 2, 4)} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("invalid objects are refused with clear messages", func(t *testing.T) {
		for _, tc := range []struct {
			obj  client.Object
			want []string
		}{
			{&v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: "both", Namespace: "default"}, Spec: v1alpha1.TestClusterSpec{PoolRef: "ci", TemplateRef: "sim"}},
				[]string{"set exactly one of spec.poolRef"}},
			{&v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: "neither", Namespace: "default"}},
				[]string{"set exactly one of spec.poolRef"}},
			{&v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: "ttl", Namespace: "default"}, Spec: v1alpha1.TestClusterSpec{PoolRef: "ci", TTL: &metav1.Duration{}}},
				[]string{"spec.ttl must be at least 1s"}},
			{&v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: "prio", Namespace: "default"}, Spec: v1alpha1.TestClusterSpec{PoolRef: "ci", Priority: "Urgent"}},
				[]string{"spec.priority", `"High", "Normal", "Low"`}},
			{pool("small", "sim", 5, 2), []string{"spec.maxSize must be at least spec.minReady"}},
			{&v1alpha1.ClusterTemplate{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "default"}, Spec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: ptr(int32(2))}}},
				[]string{"spec.nodes.real", "less than or equal to 1"}},
		} {
			err := c.Create(ctx, tc.obj)
			if err == nil {
				t.Errorf("%s %s was accepted", tc.obj.GetObjectKind().GroupVersionKind().Kind, tc.obj.GetName())
				_ = c.Delete(ctx, tc.obj)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("creating %s: error %q does not say %q", tc.obj.GetName(), err, w)
				}
			}
		}
		// A bound cluster name cannot be changed by anyone.
		tc := claim("immutable", "nosuchpool")
		if err := c.Create(ctx, tc); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Delete(ctx, tc) }()
		base := tc.DeepCopy()
		tc.Spec.ClusterName = "x"
		if err := c.Patch(ctx, tc, client.MergeFrom(base)); err != nil {
			t.Fatalf("setting clusterName once: %v", err)
		}
		base = tc.DeepCopy()
		tc.Spec.ClusterName = "y"
		if err := c.Patch(ctx, tc, client.MergeFrom(base)); err == nil || !strings.Contains(err.Error(), "cannot change") {
			t.Errorf("changing clusterName: got %v, want a refusal", err)
		}
	})

	t.Run("pool fills to minReady and a claim binds at once", func(t *testing.T) {
		hh := h.with(t)
		s.waitPoolReady(ctx, t, "ci", 2)
		if got := hh.poolClusters("ci"); len(got) != 2 {
			t.Fatalf("pool ci has clusters %v, want 2 (minReady)", got)
		}
		start := time.Now()
		r := hh.must("create", "testcluster", "pr-42", "--pool", "ci", "--ttl", "30m", "--label", "repo=charts", "--label", "pr=42")
		took := time.Since(start)
		path := strings.TrimSpace(r.stdout)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("create testcluster printed %q, not a kubeconfig path: %s", path, r)
		}
		t.Logf("claim from a warm pool, CLI end to end: %s", took)
		kubectl, _ := kube.Cache{Dir: mustCacheDir(t)}.Get(newVersion)
		out, err := runOut(kubectl.Bin("kubectl"), "--kubeconfig", path, "get", "nodes", "-o", "name")
		if err != nil || !strings.Contains(out, "node/") {
			t.Fatalf("kubeconfig from create testcluster does not reach a cluster with nodes: %v\n%s", err, out)
		}
		tc, err := s.getTC(ctx, "pr-42")
		if err != nil {
			t.Fatal(err)
		}
		if tc.Status.Phase != v1alpha1.TestClusterReady || !slices.Contains(hh.poolClusters("ci"), tc.Spec.ClusterName) {
			t.Fatalf("pr-42: phase %s cluster %q, want Ready on a cluster of pool ci", tc.Status.Phase, tc.Spec.ClusterName)
		}
		for _, ts := range []*metav1.Time{tc.Status.Timings.Requested, tc.Status.Timings.Ready, tc.Status.Timings.Bound, tc.Status.ExpiresAt} {
			if ts == nil {
				t.Errorf("pr-42 status lacks a time: %+v", tc.Status)
			}
		}
		secret := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: tc.Status.KubeconfigSecret}, secret); err != nil {
			t.Fatal(err)
		}
		if refs := secret.OwnerReferences; len(refs) != 1 || refs[0].UID != tc.UID {
			t.Errorf("kubeconfig Secret owners %+v, want the TestCluster", refs)
		}
		// The pool refills: 2 Ready besides the claimed one.
		s.waitPoolReady(ctx, t, "ci", 2)

		// Deleting the TestCluster deletes its cluster and Secret, and the
		// kubeconfig file create wrote.
		hh.must("delete", "testcluster", "pr-42")
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("kubeconfig %s of the deleted TestCluster is still there: %v", path, err)
		}
		if _, ok := hh.clusters()[tc.Spec.ClusterName]; ok {
			t.Errorf("cluster %s still exists after its TestCluster was deleted", tc.Spec.ClusterName)
		}
		s.waitGone(ctx, t, secret)
		if v := s.metric("ephemera_pool_hits_total", `pool="ci"`); v < 1 {
			t.Errorf("ephemera_pool_hits_total{pool=ci} = %v, want >= 1", v)
		}
		if v := s.metric("ephemera_cluster_seconds_total", `owner="charts"`); v <= 0 {
			t.Errorf("ephemera_cluster_seconds_total{owner=charts} = %v, want > 0", v)
		}
		// The management plane's real node started the host's registry
		// cache; serve reports it.
		if v := s.metric("ephemera_registry_up", ""); v != 1 {
			t.Errorf("ephemera_registry_up = %v, want 1 (the management plane's node started the cache)", v)
		}
	})

	t.Run("extend and hold move the lease end; the hold is capped", func(t *testing.T) {
		hh := h.with(t)
		// A kubeconfig written where the user said is the user's: delete
		// leaves it alone.
		kubeconfigOut := filepath.Join(t.TempDir(), "kubeconfig")
		hh.must("create", "testcluster", "lease", "--pool", "ci", "--ttl", "10m", "--kubeconfig-out", kubeconfigOut)
		expires := func() time.Time {
			t.Helper()
			tc, err := s.getTC(ctx, "lease")
			if err != nil {
				t.Fatal(err)
			}
			return tc.Status.ExpiresAt.Time
		}
		waitExpiry := func(want time.Time) {
			t.Helper()
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := waitFor(wctx, func() (bool, string) {
				got := expires()
				d := got.Sub(want)
				return d > -5*time.Second && d < 5*time.Second, fmt.Sprintf("expiresAt %s, want about %s", got, want)
			}); err != nil {
				t.Error(err)
			}
		}
		waitExpiry(time.Now().Add(10 * time.Minute))
		hh.must("extend", "lease", "--ttl", "2h")
		waitExpiry(time.Now().Add(2 * time.Hour))
		hh.must("hold", "lease", "--for", "3h")
		waitExpiry(time.Now().Add(3 * time.Hour))
		hh.must("hold", "lease", "--for", "10h") // --max-hold 4h
		waitExpiry(time.Now().Add(4 * time.Hour))
		hh.must("delete", "testcluster", "lease")
		if _, err := os.Stat(kubeconfigOut); err != nil {
			t.Errorf("delete testcluster removed the --kubeconfig-out file: %v", err)
		}
	})

	t.Run("an expired lease deletes the TestCluster and its cluster", func(t *testing.T) {
		hh := h.with(t)
		hh.must("create", "testcluster", "short", "--pool", "ci", "--ttl", "2s")
		tc, err := s.getTC(ctx, "short")
		if err != nil {
			t.Fatal(err)
		}
		s.waitGone(ctx, t, tc)
		if _, ok := hh.clusters()[tc.Spec.ClusterName]; ok {
			t.Errorf("cluster %s of an expired lease still exists", tc.Spec.ClusterName)
		}
	})

	t.Run("a template request builds a new cluster", func(t *testing.T) {
		hh := h.with(t)
		r := hh.must("create", "testcluster", "fresh", "--template", "bare", "--ttl", "10m")
		if !strings.Contains(r.stderr, "Provisioning") {
			t.Errorf("no Provisioning progress on stderr:\n%s", r.stderr)
		}
		tc, err := s.getTC(ctx, "fresh")
		if err != nil {
			t.Fatal(err)
		}
		cl, ok := hh.clusters()[tc.Spec.ClusterName]
		if !ok || cl.Phase != "Running" || !strings.HasPrefix(tc.Spec.ClusterName, "fresh-") {
			t.Fatalf("cluster %q of template request: %+v", tc.Spec.ClusterName, cl)
		}
		hh.must("delete", "testcluster", "fresh")
	})

	t.Run("run from a pool: a pass gives the cluster back, a failure holds it until the hold ends", func(t *testing.T) {
		hh := h.with(t)
		art := t.TempDir()
		runKubeconfigs := func() []string {
			t.Helper()
			files, err := filepath.Glob(ephemeraserver.NewLayout(h.stateDir).LeaseKubeconfig("default", "ci-run-*"))
			if err != nil {
				t.Fatal(err)
			}
			return files
		}
		r := hh.run(ctx, "run", "--pool", "ci", "--artifacts", art+"/pass", "--", "sh", "-c", junitScript(t, "a=pass"))
		if r.err != nil || !strings.Contains(r.stderr, "Run PASSED") || !strings.Contains(r.stderr, "cluster=ci-run-") {
			t.Fatalf("passing run: %s", r)
		}
		if files := runKubeconfigs(); len(files) > 0 {
			t.Errorf("the passing run left its kubeconfig: %v", files)
		}
		r = hh.run(ctx, "run", "--pool", "ci", "--artifacts", art+"/fail", "--on-failure", "hold", "--hold-for", "4s", "--", "sh", "-c", junitScript(t, "a=fail"))
		if exitCode(r.err) != 1 || !strings.Contains(r.stderr, "Holding TestCluster default/ci-run-") {
			t.Fatalf("failing run: %s", r)
		}
		var list v1alpha1.TestClusterList
		if err := c.List(ctx, &list, client.InNamespace("default")); err != nil {
			t.Fatal(err)
		}
		var held *v1alpha1.TestCluster
		for i := range list.Items {
			if strings.HasPrefix(list.Items[i].Name, "ci-run-") {
				if held != nil {
					t.Fatalf("more than one run TestCluster left: %s and %s (the passing run's was not given back)", held.Name, list.Items[i].Name)
				}
				held = &list.Items[i]
			}
		}
		if held == nil || held.Spec.HoldUntil == nil {
			t.Fatalf("the failed run's TestCluster is not held: %+v", held)
		}
		// The held cluster's kubeconfig stays for debugging.
		if files := runKubeconfigs(); len(files) != 1 || filepath.Base(files[0]) != held.Name {
			t.Errorf("kubeconfigs of runs: %v, want only the held %s", files, held.Name)
		}
		s.waitGone(ctx, t, held)
		if _, ok := hh.clusters()[held.Spec.ClusterName]; ok {
			t.Errorf("cluster %s still exists after its hold ended", held.Spec.ClusterName)
		}
	})

	t.Run("50 concurrent claims on a pool of 5 never share a cluster and are served in order", func(t *testing.T) {
		testBurst(t, h, s, 50)
	})

	t.Run("the reaper deletes a cluster nothing owns", func(t *testing.T) {
		hh := h.with(t)
		p := local.New(local.Options{StateDir: h.stateDir, Cache: kube.Cache{Dir: mustCacheDir(t)}, Supervisor: []string{ephemeraBin, "supervise"}})
		labels := map[string]string{provision.LabelServer: "ephemera", provision.LabelPool: "gone", provision.LabelPoolUID: "no-such-uid"}
		spec := template("x", 0).Spec
		if err := p.Create(ctx, "orphan", spec, provider.CreateOptions{Labels: labels}); err != nil {
			t.Fatal(err)
		}
		// Someone else's cluster, without our label, is left alone.
		if err := p.Create(ctx, "bystander", spec, provider.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer hh.must("delete", "cluster", "bystander")
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := waitFor(wctx, func() (bool, string) {
			_, ok := hh.clusters()["orphan"]
			return !ok, "orphan still exists"
		}); err != nil {
			t.Fatal(err)
		}
		if _, ok := hh.clusters()["bystander"]; !ok {
			t.Error("the reaper deleted a cluster without the server's label")
		}
		if v := s.metric("ephemera_reaped_total", ""); v < 1 {
			t.Errorf("ephemera_reaped_total = %v, want >= 1", v)
		}
	})

	t.Run("serve killed while provisioning converges after a restart", func(t *testing.T) {
		hh := h.with(t)
		hh.must("create", "testcluster", "building", "--template", "sim", "--wait", "0")
		if err := c.Create(ctx, pool("grow", "bare", 2, 2)); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := waitFor(wctx, func() (bool, string) {
			tc, err := s.getTC(ctx, "building")
			return err == nil && tc.Status.Phase == v1alpha1.TestClusterProvisioning && len(hh.poolClusters("grow")) > 0, "waiting for provisioning to start"
		}); err != nil {
			t.Fatal(err)
		}
		s.kill()
		s.start()
		s.waitPoolReady(ctx, t, "grow", 2)
		wctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := waitFor(wctx, func() (bool, string) {
			tc, err := s.getTC(ctx, "building")
			return err == nil && tc.Status.Phase == v1alpha1.TestClusterReady, fmt.Sprintf("building: %v %+v", err, tc.Status)
		}); err != nil {
			t.Fatal(err)
		}
		tc, _ := s.getTC(ctx, "building")
		// Exactly the clusters something owns: 2 of ci, 2 of grow, building's;
		// nothing of the deleted pool burst. Half-built clusters of the killed
		// server are finished or deleted.
		var got []string
		err := waitFor(wctx, func() (bool, string) {
			got = got[:0]
			for name, cl := range hh.clusters() {
				if name != "bystander" && cl.Phase != "Deleting" {
					got = append(got, name)
				}
			}
			slices.Sort(got)
			want := append(append(hh.poolClusters("ci"), hh.poolClusters("grow")...), tc.Spec.ClusterName)
			slices.Sort(want)
			return len(hh.poolClusters("ci")) == 2 && len(hh.poolClusters("grow")) == 2 && slices.Equal(got, want), fmt.Sprintf("clusters %v", got)
		})
		if err != nil {
			t.Errorf("after restart, want 2 clusters of ci, 2 of grow and building's (%s): %v", tc.Spec.ClusterName, err)
		}
	})
}

// testBurst creates n claims at once, then a pool of 5 for them and, acting as
// CI jobs that finish, deletes bound claims until all were served. It
// checks that no cluster is ever bound twice and that claims are served in
// queue order.
func testBurst(t *testing.T, h *harness, s *server, n int) {
	ctx := t.Context()
	c := s.client
	names := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		names[i] = fmt.Sprintf("job-%02d", i)
		wg.Go(func() {
			if err := c.Create(ctx, claim(names[i], "burst")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The pool comes after the claims, so every claim waits in the queue
	// first and the order they are served in is fully determined. Once the
	// queue settles, the positions are 1..n, each held once.
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitFor(qctx, func() (bool, string) {
		var list v1alpha1.TestClusterList
		if err := c.List(ctx, &list, client.InNamespace("default")); err != nil {
			return false, err.Error()
		}
		var positions []int
		for _, tc := range list.Items {
			if tc.Spec.PoolRef == "burst" {
				positions = append(positions, int(tc.Status.QueuePosition))
			}
		}
		slices.Sort(positions)
		for i, p := range positions {
			if p != i+1 {
				return false, fmt.Sprintf("queue positions %v", positions)
			}
		}
		return len(positions) == n, fmt.Sprintf("queue positions %v", positions)
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, pool("burst", "bare", 5, 5)); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The last jobs give their clusters back, then the pool goes.
		for _, name := range names {
			if err := c.Delete(ctx, claim(name, "burst")); err != nil && !apierrors.IsNotFound(err) {
				t.Error(err)
			}
		}
		for _, name := range names {
			s.waitGone(ctx, t, claim(name, "burst"))
		}
		if err := c.Delete(ctx, pool("burst", "bare", 5, 5)); err != nil {
			t.Error(err)
		}
	}()
	var all v1alpha1.TestClusterList
	if err := c.List(ctx, &all, client.InNamespace("default")); err != nil {
		t.Fatal(err)
	}
	// The queue order: creation time (seconds), then name.
	var order []v1alpha1.TestCluster
	for _, tc := range all.Items {
		if tc.Spec.PoolRef == "burst" {
			order = append(order, tc)
		}
	}
	slices.SortFunc(order, func(a, b v1alpha1.TestCluster) int {
		if d := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	rank := map[string]int{}
	for i, tc := range order {
		rank[tc.Name] = i
	}

	everBound := map[string]string{} // cluster → claim
	served := map[string]bool{}
	wctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	for len(served) < n {
		if wctx.Err() != nil {
			t.Fatalf("only %d of %d claims served", len(served), n)
		}
		var list v1alpha1.TestClusterList
		if err := c.List(ctx, &list, client.InNamespace("default")); err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, tc := range list.Items {
			if tc.Spec.PoolRef != "burst" {
				continue
			}
			if cl := tc.Spec.ClusterName; cl != "" {
				if other, ok := everBound[cl]; ok && other != tc.Name {
					t.Fatalf("cluster %s bound to %s and %s", cl, other, tc.Name)
				}
				everBound[cl] = tc.Name
				if !served[tc.Name] {
					served[tc.Name] = true
					// Everything ahead in the queue was served already.
					for _, ahead := range order[:rank[tc.Name]] {
						if !served[ahead.Name] && !isBound(list, ahead.Name) {
							t.Fatalf("%s was served before %s, which is ahead of it in the queue", tc.Name, ahead.Name)
						}
					}
				}
			}
			if tc.Status.Phase == v1alpha1.TestClusterReady {
				ready++
				// The CI job is done: give the cluster back.
				if err := c.Delete(ctx, &tc); err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
			}
		}
		if ready > 5 {
			t.Fatalf("%d claims Ready at once on a pool of maxSize 5", ready)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(everBound) != n {
		t.Errorf("%d distinct clusters for %d claims; returned clusters must be deleted, not reused", len(everBound), n)
	}
	if v := s.metric("ephemera_pool_misses_total", `pool="burst"`); v != float64(n) {
		t.Errorf("ephemera_pool_misses_total{pool=burst} = %v, want %d (every claim waited)", v, n)
	}
}

func isBound(list v1alpha1.TestClusterList, name string) bool {
	for _, tc := range list.Items {
		if tc.Name == name {
			return tc.Spec.ClusterName != ""
		}
	}
	return true // deleted: it was served and returned
}

func mustCacheDir(t *testing.T) string {
	t.Helper()
	d, err := kube.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func runOut(name string, args ...string) (string, error) {
	out, err := osexec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestServerOperatorMode runs serve on an existing cluster (here a
// control-plane-only ephemera cluster) instead of the embedded management
// plane, and claims a cluster through it with --server-kubeconfig.
func TestServerOperatorMode(t *testing.T) {
	h := newHarness(t)
	h.must("create", "cluster", "mgmt", "--real-nodes", "0", "--simulated-nodes", "0")
	mgmt := h.must("get", "kubeconfig", "mgmt").stdout
	path := t.TempDir() + "/mgmt.kubeconfig"
	if err := os.WriteFile(path, []byte(mgmt), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &server{h: h, args: []string{"--kubeconfig", path, "--instance", "ops", "--leader-election-namespace", "kube-system"},
		logPath: t.TempDir() + "/serve.log", metricsAddr: freeAddr(t), healthAddr: freeAddr(t), kubeconfig: path}
	s.start()
	t.Cleanup(s.cleanup)
	ctx := t.Context()
	for _, obj := range []client.Object{template("bare", 0), pool("ops", "bare", 1, 4)} {
		if err := s.client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	r := h.must("--server-kubeconfig", path, "create", "testcluster", "job", "--pool", "ops")
	if _, err := os.Stat(strings.TrimSpace(r.stdout)); err != nil {
		t.Fatalf("no kubeconfig: %s", r)
	}
	tc, err := s.getTC(ctx, "job")
	if err != nil || tc.Status.Phase != v1alpha1.TestClusterReady {
		t.Fatalf("job: %v %+v", err, tc.Status)
	}
	if got := h.clusters()[tc.Spec.ClusterName]; got.Phase != "Running" {
		t.Errorf("cluster %s of the claim: %+v", tc.Spec.ClusterName, got)
	}
	lease := &coordinationv1.Lease{}
	if err := s.client.Get(ctx, types.NamespacedName{Namespace: "kube-system", Name: "ephemera-ops"}, lease); err != nil {
		t.Errorf("no leader election lease: %v", err)
	}

	t.Run("a replica with another state dir but the same instance refuses to start", func(t *testing.T) {
		other := &harness{t: t, stateDir: t.TempDir()}
		r := other.run(ctx, "serve", "--kubeconfig", path, "--instance", "ops", "--leader-election-namespace", "kube-system",
			"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
		if r.err == nil || !strings.Contains(r.stderr, "is served from state dir "+h.stateDir) {
			t.Errorf("a second state dir for instance ops: %s", r)
		}
	})

	t.Run("a second replica on the same state dir waits for it, and takes over with what the first did meanwhile", func(t *testing.T) {
		s2 := &server{h: h, args: s.args, logPath: t.TempDir() + "/serve2.log", metricsAddr: freeAddr(t), healthAddr: freeAddr(t), kubeconfig: path}
		s2.launch()
		h.t.Cleanup(s2.cleanup) // the parent's: it outlives this subtest
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := waitFor(wctx, func() (bool, string) {
			return strings.Contains(s2.log(), "Waiting for the state dir"), "replica 2 does not say it waits:\n" + s2.log()
		}); err != nil {
			t.Fatal(err)
		}
		// The first replica goes on: a claim takes the spare, and the pool
		// builds a new one replica 2 has never seen.
		h.with(t).must("--server-kubeconfig", path, "create", "testcluster", "late", "--pool", "ops")
		s.waitPoolReady(ctx, t, "ops", 1)
		s.kill()
		s2.waitReady()
		for _, name := range []string{"job", "late"} {
			tc := s2.waitTC(ctx, t, "default", name, time.Minute, func(tc *v1alpha1.TestCluster) bool { return tc.Status.Phase == v1alpha1.TestClusterReady })
			if got := h.with(t).clusters()[tc.Spec.ClusterName]; got.Phase != "Running" {
				t.Errorf("%s's cluster %s after the takeover: %+v", name, tc.Spec.ClusterName, got)
			}
		}
		h.with(t).must("--server-kubeconfig", path, "create", "testcluster", "after", "--pool", "ops")
		// Replica 2 knows every cluster of the pool: it builds none beyond
		// the claims it serves and one spare.
		time.Sleep(3 * time.Second)
		if got := h.with(t).poolClusters("ops"); len(got) > 4 {
			t.Errorf("pool ops has %d clusters %v after the takeover, want at most 4 (3 claimed, 1 spare)", len(got), got)
		}
	})
}
