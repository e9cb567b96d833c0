package testcluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/fake"
)

// These tests run the reconciler against controller-runtime's fake client
// and a fake provider (both named so): the bookkeeping of who may see and
// delete which cluster. test/e2e runs the same against a real API server
// and real clusters.

var now = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

type world struct {
	t    *testing.T
	c    client.Client
	p    *fake.Provider
	prov *provision.Provisioner
	r    *Reconciler
}

func newWorld(t *testing.T, objs ...client.Object) *world {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	tmpl := &v1alpha1.ClusterTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "t"}}
	tmplB := &v1alpha1.ClusterTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "t"}}
	c := fakeclient.NewClientBuilder().WithScheme(s).WithObjects(append(objs, tmpl, tmplB)...).
		WithStatusSubresource(&v1alpha1.TestCluster{}).Build()
	p := fake.New()
	prov := provision.New(p, provision.Options{Log: logr.Discard(), Create: fake.Create, Adopt: fake.Adopt})
	if _, err := prov.Load(t.Context(), map[string]string{provision.LabelServer: "s"}); err != nil {
		t.Fatal(err)
	}
	return &world{t: t, c: c, p: p, prov: prov,
		r: &Reconciler{Client: c, Provisioner: prov, Server: "s", Limits: DefaultLimits, Now: func() time.Time { return now }}}
}

func testCluster(ns, name string, spec v1alpha1.TestClusterSpec) *v1alpha1.TestCluster {
	return &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name),
		CreationTimestamp: metav1.Time{Time: now.Add(-time.Minute)}}, Spec: spec}
}

// reconcile runs the reconciler until the TestCluster's cluster settles
// (the provisioner works in the background) and returns the TestCluster.
func (w *world) reconcile(ns, name string) *v1alpha1.TestCluster {
	w.t.Helper()
	key := types.NamespacedName{Namespace: ns, Name: name}
	for range 200 {
		if _, err := w.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
			w.t.Fatalf("reconcile %s: %v", key, err)
		}
		tc := &v1alpha1.TestCluster{}
		if err := w.c.Get(context.Background(), key, tc); apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			w.t.Fatal(err)
		}
		if tc.Status.Phase != v1alpha1.TestClusterProvisioning {
			return tc
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.t.Fatalf("%s never left Provisioning", key)
	return nil
}

func (w *world) secret(ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	if err := w.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		w.t.Fatal(err)
	}
	return s
}

func (w *world) delete(ns, name string) {
	w.t.Helper()
	tc := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := w.c.Delete(context.Background(), tc); err != nil {
		w.t.Fatal(err)
	}
	if got := w.reconcile(ns, name); got != nil {
		w.t.Fatalf("%s/%s still exists after its delete was reconciled: %+v", ns, name, got.Status)
	}
}

func readyCondition(tc *v1alpha1.TestCluster) metav1.Condition {
	if c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func TestTakeoverThroughClusterName(t *testing.T) {
	victim := testCluster("a", "victim", v1alpha1.TestClusterSpec{TemplateRef: "t", ClusterName: "victim-abcde"})
	// A user of namespace b names the victim's cluster, as if the server
	// had bound it (the API refuses this on create; on update only the
	// cluster's own record tells).
	thief := testCluster("b", "thief", v1alpha1.TestClusterSpec{TemplateRef: "t", ClusterName: "victim-abcde"})
	w := newWorld(t, victim, thief)
	if tc := w.reconcile("a", "victim"); tc.Status.Phase != v1alpha1.TestClusterReady {
		t.Fatalf("victim: %s %+v", tc.Status.Phase, readyCondition(tc))
	}
	tc := w.reconcile("b", "thief")
	if tc.Status.Phase != v1alpha1.TestClusterFailed || !strings.Contains(readyCondition(tc).Message, "not bound to this TestCluster by ephemera") {
		t.Errorf("thief: phase %s, Ready %+v; want Failed, saying the cluster is not its", tc.Status.Phase, readyCondition(tc))
	}
	if s := w.secret("b", "thief-kubeconfig"); s != nil {
		t.Fatalf("the thief got a kubeconfig Secret: %s", s.Data[KubeconfigKey])
	}
	w.delete("b", "thief")
	if !w.p.Has("victim-abcde") {
		t.Fatal("deleting the thief deleted the victim's cluster")
	}
	if tc := w.reconcile("a", "victim"); tc.Status.Phase != v1alpha1.TestClusterReady {
		t.Errorf("victim after the thief went: %s", tc.Status.Phase)
	}
	w.delete("a", "victim")
	if w.p.Has("victim-abcde") {
		t.Error("deleting the victim left its cluster")
	}
}

func TestTakeoverOfAPoolCluster(t *testing.T) {
	pool := &v1alpha1.ClusterPool{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "ci", UID: "pool-uid"}}
	victim := testCluster("a", "victim", v1alpha1.TestClusterSpec{PoolRef: "ci", ClusterName: "ci-abcde"})
	thief := testCluster("a", "thief", v1alpha1.TestClusterSpec{PoolRef: "ci", ClusterName: "ci-abcde"})
	w := newWorld(t, pool, victim, thief)
	w.prov.Ensure("ci-abcde", v1alpha1.ClusterTemplateSpec{}, provision.PoolLabels("s", pool), provision.AddonInputs{})
	deadline := time.Now().Add(5 * time.Second)
	for st, _ := w.prov.Get("ci-abcde"); st.State != provision.Ready; st, _ = w.prov.Get("ci-abcde") {
		if time.Now().After(deadline) {
			t.Fatal("pool cluster never Ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.prov.Claim(t.Context(), "ci-abcde", victim); err != nil {
		t.Fatal(err)
	}
	if tc := w.reconcile("a", "victim"); tc.Status.Phase != v1alpha1.TestClusterReady {
		t.Fatalf("victim: %s %+v", tc.Status.Phase, readyCondition(tc))
	}
	if tc := w.reconcile("a", "thief"); tc.Status.Phase != v1alpha1.TestClusterFailed {
		t.Errorf("thief of a claimed pool cluster: %s, want Failed", tc.Status.Phase)
	}
	if s := w.secret("a", "thief-kubeconfig"); s != nil {
		t.Fatal("the thief got a kubeconfig Secret")
	}
	w.delete("a", "thief")
	if !w.p.Has("ci-abcde") {
		t.Fatal("deleting the thief deleted the victim's pool cluster")
	}
}

func TestDeadClusterTurnsTestClusterNotReadyAndBack(t *testing.T) {
	w := newWorld(t, testCluster("a", "job", v1alpha1.TestClusterSpec{TemplateRef: "t", ClusterName: "job-abcde"}))
	if tc := w.reconcile("a", "job"); tc.Status.Phase != v1alpha1.TestClusterReady {
		t.Fatalf("job: %s", tc.Status.Phase)
	}
	w.p.SetPhase("job-abcde", provider.PhaseBroken)
	w.prov.ObserveAll(t.Context())
	tc := w.reconcile("a", "job")
	if c := readyCondition(tc); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonClusterUnhealthy {
		t.Errorf("after its cluster died: Ready %+v, want False/%s", c, v1alpha1.ReasonClusterUnhealthy)
	}
	w.p.SetPhase("job-abcde", provider.PhaseRunning)
	w.prov.ObserveAll(t.Context())
	if tc := w.reconcile("a", "job"); tc.Status.Phase != v1alpha1.TestClusterReady {
		t.Errorf("after its cluster recovered: %s, want Ready", tc.Status.Phase)
	}
}

func TestRebuiltClusterRewritesItsSecret(t *testing.T) {
	w := newWorld(t, testCluster("a", "job", v1alpha1.TestClusterSpec{TemplateRef: "t", ClusterName: "job-abcde"}))
	w.reconcile("a", "job")
	first := string(w.secret("a", "job-kubeconfig").Data[KubeconfigKey])
	// The cluster is gone (deleted by hand, a lost host): the server
	// builds it again, with new certificates.
	if err := w.prov.Delete(t.Context(), "job-abcde"); err != nil {
		t.Fatal(err)
	}
	if tc := w.reconcile("a", "job"); tc.Status.Phase != v1alpha1.TestClusterReady {
		t.Fatalf("after the rebuild: %s", tc.Status.Phase)
	}
	if second := string(w.secret("a", "job-kubeconfig").Data[KubeconfigKey]); second == first {
		t.Errorf("the Secret still holds the old kubeconfig %q", first)
	}
}

func TestLeaseCapsAreShownInStatus(t *testing.T) {
	w := newWorld(t, testCluster("a", "long", v1alpha1.TestClusterSpec{TemplateRef: "t", ClusterName: "long-abcde", TTL: &metav1.Duration{Duration: 8760 * time.Hour}}))
	tc := w.reconcile("a", "long")
	if want := now.Add(DefaultMaxTTL); !tc.Status.ExpiresAt.Time.Equal(want) {
		t.Errorf("expiresAt %s, want %s (bound now + --max-ttl)", tc.Status.ExpiresAt, want)
	}
	c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionLeaseCapped)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "--max-ttl 24h") {
		t.Errorf("LeaseCapped condition %+v, want True naming --max-ttl 24h", c)
	}
}

func TestSecretOfAnotherOwnerIsNotOverwritten(t *testing.T) {
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "job-kubeconfig"}, Data: map[string][]byte{"x": []byte("y")}}
	w := newWorld(t, other, testCluster("a", "job", v1alpha1.TestClusterSpec{TemplateRef: "t", ClusterName: "job-abcde"}))
	tc := w.reconcile("a", "job")
	if tc.Status.Phase == v1alpha1.TestClusterReady || !strings.Contains(readyCondition(tc).Message, "not this TestCluster's") {
		t.Errorf("with a foreign Secret in the way: %s %+v", tc.Status.Phase, readyCondition(tc))
	}
	if s := w.secret("a", "job-kubeconfig"); string(s.Data["x"]) != "y" || s.Data[KubeconfigKey] != nil {
		t.Errorf("the foreign Secret was changed: %v", s.Data)
	}
	w.delete("a", "job")
	if w.secret("a", "job-kubeconfig") == nil {
		t.Error("deleting the TestCluster deleted a Secret it does not own")
	}
}
