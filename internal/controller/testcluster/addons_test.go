package testcluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/fake"
)

func TestAddonsCondition(t *testing.T) {
	pe := &addons.PhaseError{Phase: "operators", Item: "Deployment cert-manager/cert-manager", Reason: "not Available: pod cert-manager-x: ImagePullBackOff"}
	three := []string{"operators", "crs", "apps"}
	ready := []addons.PhaseResult{{Name: "operators", Duration: 12 * time.Second}, {Name: "crs", Duration: 250 * time.Millisecond}}
	labels := func(v string) map[string]string { return map[string]string{provision.LabelAddons: v} }
	type want struct {
		Status metav1.ConditionStatus
		Reason string
		Msg    string
		OK     bool
	}
	tests := []struct {
		name string
		st   provision.Status
		want want
	}{
		{"no addons, building", provision.Status{State: provision.Creating},
			want{metav1.ConditionTrue, v1alpha1.ReasonNoAddons, "the template has no addons", true}},
		{"no addons, ready", provision.Status{State: provision.Ready},
			want{metav1.ConditionTrue, v1alpha1.ReasonNoAddons, "the template has no addons", true}},
		{"waiting for the cluster", provision.Status{State: provision.Creating, Labels: labels(provision.AddonsPending), Addons: provision.AddonsStatus{Phases: three}},
			want{metav1.ConditionFalse, v1alpha1.ReasonAddonsPending, "installed once the cluster is ready: operators, crs, apps", true}},
		{"first phase", provision.Status{State: provision.Creating, Addons: provision.AddonsStatus{Phases: three, Current: "operators"}},
			want{metav1.ConditionFalse, v1alpha1.ReasonAddonsInstalling, "installing phase operators (1 of 3)", true}},
		{"third phase", provision.Status{State: provision.Creating, Addons: provision.AddonsStatus{Phases: three, Current: "apps", Ready: ready}},
			want{metav1.ConditionFalse, v1alpha1.ReasonAddonsInstalling, "installing phase apps (3 of 3); ready: operators 12s, crs 250ms", true}},
		{"all phases ready, kubeconfig not read yet", provision.Status{State: provision.Creating, Addons: provision.AddonsStatus{Phases: three[:2], Ready: ready}},
			want{metav1.ConditionTrue, v1alpha1.ReasonAddonsInstalled, "2 phases ready: operators 12s, crs 250ms", true}},
		{"ready", provision.Status{State: provision.Ready, Labels: labels(provision.AddonsReady), Addons: provision.AddonsStatus{Phases: three[:2], Ready: ready}},
			want{metav1.ConditionTrue, v1alpha1.ReasonAddonsInstalled, "2 phases ready: operators 12s, crs 250ms", true}},
		{"ready, installed by an earlier server", provision.Status{State: provision.Ready, Labels: labels(provision.AddonsReady), Adopted: true},
			want{metav1.ConditionTrue, v1alpha1.ReasonAddonsInstalled, "every phase is installed and ready", true}},
		{"being adopted, installed by an earlier server", provision.Status{State: provision.Creating, Labels: labels(provision.AddonsReady), Adopted: true},
			want{metav1.ConditionTrue, v1alpha1.ReasonAddonsInstalled, "every phase is installed and ready", true}},
		{"a phase failed", provision.Status{State: provision.Failed, Err: &lifecycle.CreateError{Err: pe, Deleted: true}, Addons: provision.AddonsStatus{Phases: three, Err: pe}},
			want{metav1.ConditionFalse, v1alpha1.ReasonAddonsFailed, "phase operators: Deployment cert-manager/cert-manager not Available: pod cert-manager-x: ImagePullBackOff", true}},
		{"a phase failed, wrapped", provision.Status{State: provision.Failed, Addons: provision.AddonsStatus{Err: fmt.Errorf("create: %w", pe)}},
			want{metav1.ConditionFalse, v1alpha1.ReasonAddonsFailed, pe.Error(), true}},
		{"addons unreadable", provision.Status{State: provision.Failed, Addons: provision.AddonsStatus{Err: errors.New("addons: phase crs: ConfigMap crs not found")}},
			want{metav1.ConditionFalse, v1alpha1.ReasonAddonsFailed, "addons: phase crs: ConfigMap crs not found", true}},
		{"interrupted by a restart", provision.Status{State: provision.Failed, Err: provision.ErrAddonsInterrupted, Addons: provision.AddonsStatus{Err: provision.ErrAddonsInterrupted}},
			want{metav1.ConditionFalse, v1alpha1.ReasonAddonsFailed, provision.ErrAddonsInterrupted.Error(), true}},
		{"the cluster failed before its addons", provision.Status{State: provision.Failed, Err: lifecycle.ErrNotReady, Addons: provision.AddonsStatus{Phases: three}}, want{}},
		{"lost keeps what it had", provision.Status{State: provision.Lost, Labels: labels(provision.AddonsReady)}, want{}},
		{"deleting keeps what it had", provision.Status{State: provision.Deleting}, want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got want
			got.Status, got.Reason, got.Msg, got.OK = addonsCondition(tt.st)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("addonsCondition (-want +got):\n%s", d)
			}
		})
	}
}

func TestBuilding(t *testing.T) {
	for _, tt := range []struct {
		st   provision.Status
		want string
	}{
		{provision.Status{Name: "c"}, `building cluster "c"`},
		{provision.Status{Name: "c", Addons: provision.AddonsStatus{Phases: []string{"a", "b"}}}, `building cluster "c"`},
		{provision.Status{Name: "c", Addons: provision.AddonsStatus{Phases: []string{"a", "b"}, Current: "b"}}, `building cluster "c": installing addons, phase b (2 of 2)`},
	} {
		if got := building(tt.st); got != tt.want {
			t.Errorf("building(%+v) = %q, want %q", tt.st, got, tt.want)
		}
	}
}

// TestTestClusterReadyOnlyAfterAddons runs the reconciler over a template
// with addons whose phases a stand-in create reports (the engine runs
// against real clusters in internal/addons and test/e2e).
func TestTestClusterReadyOnlyAfterAddons(t *testing.T) {
	for _, tt := range []struct {
		name       string
		fail       bool
		wantPhase  v1alpha1.TestClusterPhase
		wantAddons metav1.Condition
	}{
		{name: "installed", wantPhase: v1alpha1.TestClusterReady,
			wantAddons: metav1.Condition{Type: v1alpha1.ConditionAddonsReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAddonsInstalled, Message: "2 phases ready: operators 1s, apps 1s"}},
		{name: "a phase fails", fail: true, wantPhase: v1alpha1.TestClusterFailed,
			wantAddons: metav1.Condition{Type: v1alpha1.ConditionAddonsReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAddonsFailed, Message: "phase apps: Deployment web/web not Available: pod web-x: ImagePullBackOff"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := &v1alpha1.ClusterTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "c", Name: "t"},
				Spec: v1alpha1.ClusterTemplateSpec{Addons: []v1alpha1.AddonPhase{{Name: "operators"}, {Name: "apps"}}}}
			tc := testCluster("c", "job", v1alpha1.TestClusterSpec{TemplateRef: "t", ClusterName: "job-abcde"})
			tc.Labels = map[string]string{"pr": "42"}
			w := newWorld(t, tmpl, tc)
			var seen lifecycle.AddonOptions
			var readyDuringAddons []bool
			create := func(ctx context.Context, p provider.Provider, name string, spec v1alpha1.ClusterTemplateSpec, opts lifecycle.CreateOptions) (*provider.Cluster, error) {
				c, err := fake.Create(ctx, p, name, spec, opts)
				if err != nil {
					return nil, err
				}
				seen = opts.Addons
				for _, ph := range spec.Addons {
					opts.Addons.OnPhase(addons.PhaseEvent{Phase: ph.Name, Kind: addons.PhaseStarted})
					got := w.reconcileOnce("c", "job")
					readyDuringAddons = append(readyDuringAddons, meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionReady))
					if tt.fail && ph.Name == "apps" {
						pe := &addons.PhaseError{Phase: "apps", Item: "Deployment web/web", Reason: "not Available: pod web-x: ImagePullBackOff"}
						opts.Addons.OnPhase(addons.PhaseEvent{Phase: ph.Name, Kind: addons.PhaseFailed, Err: pe})
						_ = p.Delete(ctx, name)
						return nil, &lifecycle.CreateError{Name: name, Err: pe, Deleted: true}
					}
					opts.Addons.OnPhase(addons.PhaseEvent{Phase: ph.Name, Kind: addons.PhaseReady, Duration: time.Second})
				}
				return c, nil
			}
			w.prov = provision.New(w.p, provision.Options{Log: logr.Discard(), Create: create, Adopt: fake.Adopt, Reader: w.c})
			if _, err := w.prov.Load(t.Context(), map[string]string{provision.LabelServer: "s"}); err != nil {
				t.Fatal(err)
			}
			w.r.Provisioner = w.prov
			got := w.reconcile("c", "job")
			if got.Status.Phase != tt.wantPhase {
				t.Errorf("phase %s, Ready %+v; want %s", got.Status.Phase, readyCondition(got), tt.wantPhase)
			}
			c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAddonsReady)
			if c == nil {
				t.Fatalf("no AddonsReady condition in %+v", got.Status.Conditions)
			}
			if d := cmp.Diff(tt.wantAddons, *c, cmpCondition); d != "" {
				t.Errorf("AddonsReady (-want +got):\n%s", d)
			}
			for i, ready := range readyDuringAddons {
				if ready {
					t.Errorf("Ready while phase %d was being installed", i+1)
				}
			}
			if seen.Sources.Namespace != "c" || !seen.Sources.ServerMode || seen.Labels["pr"] != "42" {
				t.Errorf("addon options %+v, want server mode in namespace c with the TestCluster's labels", seen)
			}
		})
	}
}

var cmpCondition = cmp.FilterPath(func(p cmp.Path) bool {
	switch p.Last().String() {
	case ".LastTransitionTime", ".ObservedGeneration":
		return true
	}
	return false
}, cmp.Ignore())

// reconcileOnce runs one reconcile and returns the TestCluster.
func (w *world) reconcileOnce(ns, name string) *v1alpha1.TestCluster {
	w.t.Helper()
	key := types.NamespacedName{Namespace: ns, Name: name}
	if _, err := w.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
		w.t.Fatalf("reconcile %s: %v", key, err)
	}
	tc := &v1alpha1.TestCluster{}
	if err := w.c.Get(context.Background(), key, tc); err != nil {
		w.t.Fatal(err)
	}
	return tc
}
