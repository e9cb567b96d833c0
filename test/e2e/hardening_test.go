package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/kube"
)

// killCluster SIGKILLs every process of a cluster, as a host crash would.
func (h *harness) killCluster(t *testing.T, name string) {
	t.Helper()
	pids := clusterPIDs(h.clusterDir(name))
	if len(pids) == 0 {
		t.Fatalf("cluster %s has no processes to kill", name)
	}
	for _, p := range pids {
		var pid int
		if _, err := fmt.Sscan(p, &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitTC waits until the TestCluster satisfies ok.
func (s *server) waitTC(ctx context.Context, t *testing.T, ns, name string, d time.Duration, ok func(*v1alpha1.TestCluster) bool) *v1alpha1.TestCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tc := &v1alpha1.TestCluster{}
	if err := waitFor(ctx, func() (bool, string) {
		err := s.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, tc)
		return err == nil && ok(tc), fmt.Sprintf("%s/%s: %v phase %s conditions %+v", ns, name, err, tc.Status.Phase, tc.Status.Conditions)
	}); err != nil {
		t.Fatal(err)
	}
	return tc
}

func readyReason(tc *v1alpha1.TestCluster) string {
	if c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Reason + ": " + c.Message
	}
	return ""
}

// kubeconfigWorks says whether the kubeconfig in a TestCluster's Secret
// reaches its cluster.
func (s *server) kubeconfigWorks(ctx context.Context, t *testing.T, ns, name string) error {
	t.Helper()
	secret := &corev1.Secret{}
	if err := s.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-kubeconfig"}, secret); err != nil {
		return err
	}
	path := t.TempDir() + "/kubeconfig"
	if err := os.WriteFile(path, secret.Data["kubeconfig"], 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl, _ := kube.Cache{Dir: mustCacheDir(t)}.Get(newVersion)
	out, err := runOut(kubectl.Bin("kubectl"), "--kubeconfig", path, "--request-timeout", "5s", "get", "namespace", "kube-system", "-o", "name")
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// TestServerHardening: no lease takes another's cluster, restarts keep
// healthy clusters, dead clusters are seen, names and leases are bounded.
// One server through all of it.
func TestServerHardening(t *testing.T) {
	h := newHarness(t)
	s := h.startServer("--max-clusters", "8")
	ctx := t.Context()
	c := s.client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{template("bare", 0), pool("hp", "bare", 2, 3)} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("names and clusterName are refused on create", func(t *testing.T) {
		long := strings.Repeat("a", 64)
		for _, tc := range []struct {
			obj  client.Object
			want string
		}{
			{&v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: "taker", Namespace: "default"}, Spec: v1alpha1.TestClusterSpec{TemplateRef: "bare", ClusterName: "anything"}},
				"leave it out when creating"},
			{&v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: long, Namespace: "default"}, Spec: v1alpha1.TestClusterSpec{PoolRef: "hp"}},
				"at most 63 characters"},
			{&v1alpha1.ClusterPool{ObjectMeta: metav1.ObjectMeta{Name: long, Namespace: "default"}, Spec: v1alpha1.ClusterPoolSpec{TemplateRef: "bare"}},
				"at most 63 characters"},
		} {
			err := c.Create(ctx, tc.obj)
			if err == nil {
				t.Errorf("%s was accepted", tc.obj.GetName())
				_ = c.Delete(ctx, tc.obj)
				continue
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("creating %s: %q does not say %q", tc.obj.GetName(), err, tc.want)
			}
		}
	})

	// Two leases used by the subtests below: a pool claim and a template
	// request.
	hh := h.with(t)
	hh.must("create", "testcluster", "victim", "--pool", "hp", "--ttl", "30m")
	hh.must("create", "testcluster", "keep", "--template", "bare", "--ttl", "30m")
	victim, err := s.getTC(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	keep, err := s.getTC(ctx, "keep")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a TestCluster that names another's cluster gets nothing, and deleting it deletes nothing", func(t *testing.T) {
		// With the server down, so that nothing races the thief: it names
		// the victim's cluster on update, as the API allows anyone who may
		// update TestClusters.
		s.kill()
		for _, thief := range []*v1alpha1.TestCluster{
			{ObjectMeta: metav1.ObjectMeta{Name: "thief", Namespace: "team-b"}, Spec: v1alpha1.TestClusterSpec{TemplateRef: "bare"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "thief-2", Namespace: "team-b"}, Spec: v1alpha1.TestClusterSpec{TemplateRef: "bare"}},
		} {
			if err := c.Create(ctx, thief); err != nil {
				t.Fatal(err)
			}
			base := thief.DeepCopy()
			thief.Spec.ClusterName = victim.Spec.ClusterName
			if thief.Name == "thief-2" {
				thief.Spec.ClusterName = keep.Spec.ClusterName
			}
			if err := c.Patch(ctx, thief, client.MergeFrom(base)); err != nil {
				t.Fatal(err)
			}
		}
		s.start()
		for _, name := range []string{"thief", "thief-2"} {
			tc := s.waitTC(ctx, t, "team-b", name, time.Minute, func(tc *v1alpha1.TestCluster) bool {
				return tc.Status.Phase == v1alpha1.TestClusterFailed
			})
			if !strings.Contains(readyReason(tc), "not bound to this TestCluster by ephemera") {
				t.Errorf("%s: Ready says %q", name, readyReason(tc))
			}
			secret := &corev1.Secret{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: "team-b", Name: name + "-kubeconfig"}, secret); !apierrors.IsNotFound(err) {
				t.Fatalf("%s got a kubeconfig Secret (err %v): the victim's cluster is taken", name, err)
			}
			if err := c.Delete(ctx, tc); err != nil {
				t.Fatal(err)
			}
			s.waitGone(ctx, t, tc)
		}
		for _, name := range []string{"victim", "keep"} {
			tc := s.waitTC(ctx, t, "default", name, time.Minute, func(tc *v1alpha1.TestCluster) bool { return tc.Status.Phase == v1alpha1.TestClusterReady })
			if _, ok := h.with(t).clusters()[tc.Spec.ClusterName]; !ok {
				t.Fatalf("deleting a thief deleted %s's cluster %s", name, tc.Spec.ClusterName)
			}
			if err := s.kubeconfigWorks(ctx, t, "default", name); err != nil {
				t.Errorf("%s's kubeconfig: %v", name, err)
			}
		}
	})

	t.Run("a restart keeps bound clusters and restarts those whose processes died", func(t *testing.T) {
		// A host restart: the server and every process of the template
		// request's cluster die; the data stays.
		s.kill()
		h.with(t).killCluster(t, keep.Spec.ClusterName)
		s.start()
		tc := s.waitTC(ctx, t, "default", "keep", 2*time.Minute, func(tc *v1alpha1.TestCluster) bool {
			return tc.Status.Phase == v1alpha1.TestClusterReady
		})
		if tc.Spec.ClusterName != keep.Spec.ClusterName {
			t.Fatalf("keep is bound to %s now, was %s", tc.Spec.ClusterName, keep.Spec.ClusterName)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := waitFor(wctx, func() (bool, string) {
			err := s.kubeconfigWorks(ctx, t, "default", "keep")
			return err == nil, fmt.Sprint(err)
		}); err != nil {
			t.Errorf("the kubeconfig Secret of keep does not reach its restarted cluster: %v", err)
		}
		if tc := s.waitTC(ctx, t, "default", "victim", time.Minute, func(tc *v1alpha1.TestCluster) bool {
			return tc.Status.Phase == v1alpha1.TestClusterReady
		}); tc.Spec.ClusterName != victim.Spec.ClusterName {
			t.Errorf("victim moved from %s to %s", victim.Spec.ClusterName, tc.Spec.ClusterName)
		}
	})

	t.Run("a dead pool member is replaced and never bound; a dead bound cluster turns its TestCluster not Ready", func(t *testing.T) {
		hh := h.with(t)
		s.waitPoolReady(ctx, t, "hp", 2)
		var free string
		for _, name := range hh.poolClusters("hp") {
			if name != victim.Spec.ClusterName {
				free = name
				break
			}
		}
		hh.killCluster(t, free)
		hh.killCluster(t, victim.Spec.ClusterName)
		tc := s.waitTC(ctx, t, "default", "victim", time.Minute, func(tc *v1alpha1.TestCluster) bool {
			return tc.Status.Phase != v1alpha1.TestClusterReady
		})
		if !strings.HasPrefix(readyReason(tc), v1alpha1.ReasonClusterUnhealthy) {
			t.Errorf("victim after its cluster died: %s, Ready %q; want %s", tc.Status.Phase, readyReason(tc), v1alpha1.ReasonClusterUnhealthy)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := waitFor(wctx, func() (bool, string) {
			_, ok := hh.clusters()[free]
			return !ok, "the dead pool member " + free + " is still there"
		}); err != nil {
			t.Fatal(err)
		}
		hh.must("create", "testcluster", "after", "--pool", "hp")
		after, err := s.getTC(ctx, "after")
		if err != nil {
			t.Fatal(err)
		}
		if after.Spec.ClusterName == free || after.Spec.ClusterName == victim.Spec.ClusterName {
			t.Errorf("a claim was bound to dead cluster %s", after.Spec.ClusterName)
		}
		if err := s.kubeconfigWorks(ctx, t, "default", "after"); err != nil {
			t.Errorf("the claim made after the deaths: %v", err)
		}
		hh.must("delete", "testcluster", "after", "victim")
	})

	t.Run("a ttl or extend past the server's cap is capped, and the status says so", func(t *testing.T) {
		hh := h.with(t)
		hh.must("extend", "keep", "--ttl", "8760h")
		tc := s.waitTC(ctx, t, "default", "keep", 20*time.Second, func(tc *v1alpha1.TestCluster) bool {
			c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionLeaseCapped)
			return c != nil && c.Status == metav1.ConditionTrue
		})
		if got := time.Until(tc.Status.ExpiresAt.Time); got > 24*time.Hour+time.Minute || got < 23*time.Hour {
			t.Errorf("expiresAt is %s from now, want about 24h (--max-ttl)", got.Round(time.Minute))
		}
		if c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionLeaseCapped); !strings.Contains(c.Message, "--max-ttl 24h") {
			t.Errorf("LeaseCapped says %q, want it to name --max-ttl 24h", c.Message)
		}
		hh.must("delete", "testcluster", "keep")
	})
}
