package lease

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

func readyCondition(status metav1.ConditionStatus, reason, msg string) []metav1.Condition {
	return []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: msg}}
}

func TestDescribe(t *testing.T) {
	pool := v1alpha1.TestClusterSpec{PoolRef: "ci"}
	tmpl := v1alpha1.TestClusterSpec{TemplateRef: "big", ClusterName: "big-x1y2z"}
	tests := []struct {
		name       string
		spec       v1alpha1.TestClusterSpec
		status     v1alpha1.TestClusterStatus
		wantStep   string
		wantDetail string
	}{
		{name: "not picked up", spec: pool, wantStep: "Requesting a cluster from pool ci"},
		{
			name:       "queued with position",
			spec:       pool,
			status:     v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued, QueuePosition: 3, Conditions: readyCondition(metav1.ConditionFalse, v1alpha1.ReasonQueued, "waiting for a Ready cluster: pool ci has 0 of 10")},
			wantStep:   "Queued: position 3 in pool ci",
			wantDetail: "waiting for a Ready cluster: pool ci has 0 of 10",
		},
		{name: "queued without position", spec: pool, status: v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued}, wantStep: "Queued in pool ci"},
		{
			name:       "provisioning a bound cluster",
			spec:       tmpl,
			status:     v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterProvisioning, Conditions: readyCondition(metav1.ConditionFalse, v1alpha1.ReasonProvisioning, "waiting for nodes")},
			wantStep:   "Provisioning cluster big-x1y2z from template big",
			wantDetail: "waiting for nodes",
		},
		{name: "provisioning, no cluster yet", spec: pool, status: v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterProvisioning}, wantStep: "Provisioning a cluster from pool ci"},
		{
			name:     "ready has no detail",
			spec:     tmpl,
			status:   v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterReady, Conditions: readyCondition(metav1.ConditionTrue, v1alpha1.ReasonReady, "cluster is ready")},
			wantStep: "Fetching the kubeconfig of cluster big-x1y2z",
		},
		{name: "unknown phase", spec: pool, status: v1alpha1.TestClusterStatus{Phase: "Paused"}, wantStep: "Paused (cluster from pool ci)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := &v1alpha1.TestCluster{Spec: tt.spec, Status: tt.status}
			step, detail := describe(tc)
			if d := cmp.Diff([]string{tt.wantStep, tt.wantDetail}, []string{step, detail}); d != "" {
				t.Errorf("describe mismatch (-want +got):\n%s", d)
			}
		})
	}
}

// recorder is a progress.Reporter that records calls.
type recorder struct{ calls []string }

func (r *recorder) Start(s string)  { r.calls = append(r.calls, "start "+s) }
func (r *recorder) Update(s string) { r.calls = append(r.calls, "update "+s) }
func (r *recorder) End(ok bool)     { r.calls = append(r.calls, "end") }

func TestProgressShowsChangesOnly(t *testing.T) {
	queued := func(pos int32, msg string) *v1alpha1.TestCluster {
		return &v1alpha1.TestCluster{
			Spec:   v1alpha1.TestClusterSpec{PoolRef: "ci"},
			Status: v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued, QueuePosition: pos, Conditions: readyCondition(metav1.ConditionFalse, "Queued", msg)},
		}
	}
	var r recorder
	var s progressState
	for _, tc := range []*v1alpha1.TestCluster{
		{Spec: v1alpha1.TestClusterSpec{PoolRef: "ci"}},
		{Spec: v1alpha1.TestClusterSpec{PoolRef: "ci"}},
		queued(2, "pool is full"),
		queued(2, "pool is full"),
		queued(2, "a cluster is being built"),
		queued(1, "a cluster is being built"),
	} {
		s = s.show(&r, tc)
	}
	want := []string{
		"start Requesting a cluster from pool ci",
		"start Queued: position 2 in pool ci",
		"update pool is full",
		"update a cluster is being built",
		"start Queued: position 1 in pool ci",
		"update a cluster is being built",
	}
	if d := cmp.Diff(want, r.calls); d != "" {
		t.Errorf("progress calls mismatch (-want +got):\n%s", d)
	}
}

func TestReadyLine(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	tc := &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ci-abcde"},
		Spec:       v1alpha1.TestClusterSpec{PoolRef: "ci", ClusterName: "ci-x1y2z"},
		Status:     v1alpha1.TestClusterStatus{KubernetesVersion: "v1.36.3", ExpiresAt: &metav1.Time{Time: now.Add(30 * time.Minute)}},
	}
	want := "TestCluster default/ci-abcde is Ready after 42ms (cluster ci-x1y2z, Kubernetes v1.36.3, expires " + now.Add(30*time.Minute).Format(time.RFC3339) + ", in 30m)"
	if got := ReadyLine(tc, 42*time.Millisecond+300*time.Microsecond, now); got != want {
		t.Errorf("readyLine =\n%s\nwant\n%s", got, want)
	}
}
