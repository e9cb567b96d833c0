package testruns

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

func TestTable(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	exit := func(c int32) *int32 { return &c }
	runs := []*v1alpha1.TestRun{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "e2e-abcde", CreationTimestamp: *at(-10 * time.Minute)},
			Spec:       v1alpha1.TestRunSpec{Cluster: v1alpha1.TestRunCluster{PoolRef: "ci"}},
			Status: v1alpha1.TestRunStatus{
				Phase: v1alpha1.TestRunFailed, TestCluster: "ci-x1y2z", KubernetesVersion: "v1.36.3", Job: "e2e-abcde",
				StartTime: at(-9 * time.Minute), CompletionTime: at(-5*time.Minute - 30*time.Second), ExitCode: exit(1),
				Results: &v1alpha1.TestResults{Tests: 42, Failures: 2, Errors: 1, Skipped: 3},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "smoke", CreationTimestamp: *at(-2 * time.Minute)},
			Spec:       v1alpha1.TestRunSpec{Cluster: v1alpha1.TestRunCluster{TemplateRef: "small"}},
			Status: v1alpha1.TestRunStatus{
				Phase: v1alpha1.TestRunRunning, TestCluster: "small-k2l3m", KubernetesVersion: "v1.35.4", Job: "smoke",
				StartTime: at(-90 * time.Second),
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "compat", CreationTimestamp: *at(-time.Hour)},
			Spec: v1alpha1.TestRunSpec{
				Cluster: v1alpha1.TestRunCluster{TemplateRef: "default"},
				Matrix:  &v1alpha1.TestRunMatrix{KubernetesVersions: []string{"v1.35.4", "v1.36.3"}},
			},
			Status: v1alpha1.TestRunStatus{
				Phase: v1alpha1.TestRunSucceeded, StartTime: at(-59 * time.Minute), CompletionTime: at(-47 * time.Minute),
				Results: &v1alpha1.TestResults{Tests: 84},
				Cells:   []v1alpha1.TestRunCell{{Name: "default/v1.35.4", Run: "compat-0"}, {Name: "default/v1.36.3", Run: "compat-1"}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "wide", CreationTimestamp: *at(-5 * time.Second)},
			Spec: v1alpha1.TestRunSpec{Matrix: &v1alpha1.TestRunMatrix{
				Templates: []string{"a", "b", "c"}, KubernetesVersions: []string{"v1.35.4", "v1.36.3"},
			}},
			Status: v1alpha1.TestRunStatus{Phase: v1alpha1.TestRunPending},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "new"},
			Spec:       v1alpha1.TestRunSpec{Cluster: v1alpha1.TestRunCluster{PoolRef: "ci"}},
		},
	}
	tests := []struct {
		name          string
		allNamespaces bool
		wide          bool
		want          string
	}{
		{
			name: "default",
			want: `NAME        PHASE       CLUSTER       TESTS   FAILURES   DURATION   AGE
e2e-abcde   Failed      ci-x1y2z      42      3          3m30s      10m
smoke       Running     small-k2l3m   -       -          90s        2m
compat      Succeeded   2 cells       84      0          12m        60m
wide        Pending     6 cells       -       -          -          5s
new         -           -             -       -          -          -
`,
		},
		{
			name:          "all namespaces, wide",
			allNamespaces: true,
			wide:          true,
			want: `NAMESPACE   NAME        PHASE       CLUSTER       TESTS   FAILURES   DURATION   AGE   VERSION   JOB         EXIT
default     e2e-abcde   Failed      ci-x1y2z      42      3          3m30s      10m   v1.36.3   e2e-abcde   1
team-a      smoke       Running     small-k2l3m   -       -          90s        2m    v1.35.4   smoke       -
default     compat      Succeeded   2 cells       84      0          12m        60m   -         -           -
default     wide        Pending     6 cells       -       -          -          5s    -         -           -
default     new         -           -             -       -          -          -     -         -           -
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header, rows := table(runs, tt.allNamespaces, tt.wide, now)
			var b strings.Builder
			if err := printer.Rows(&b, header, rows); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, b.String()); d != "" {
				t.Errorf("table mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	tests := []struct {
		name              string
		start, completion *metav1.Time
		want              string
	}{
		{name: "not started", want: "-"},
		{name: "not started, but completed (an Error run)", completion: at(0), want: "-"},
		{name: "running", start: at(-4*time.Minute - 5*time.Second), want: "4m5s"},
		{name: "finished", start: at(-3 * time.Hour), completion: at(-time.Hour), want: "120m"},
		{name: "seconds", start: at(-time.Hour), completion: at(-time.Hour + 7*time.Second), want: "7s"},
		{name: "clock skew", start: at(time.Second), want: "0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &v1alpha1.TestRun{Status: v1alpha1.TestRunStatus{StartTime: tt.start, CompletionTime: tt.completion}}
			if got := Duration(tr, now); got != tt.want {
				t.Errorf("Duration = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCellCount(t *testing.T) {
	tests := []struct {
		matrix *v1alpha1.TestRunMatrix
		want   int
	}{
		{matrix: nil, want: 0},
		{matrix: &v1alpha1.TestRunMatrix{}, want: 1},
		{matrix: &v1alpha1.TestRunMatrix{KubernetesVersions: []string{"v1.35.4", "v1.36.3"}}, want: 2},
		{matrix: &v1alpha1.TestRunMatrix{Templates: []string{"a", "b", "c"}}, want: 3},
		{matrix: &v1alpha1.TestRunMatrix{Templates: []string{"a", "b"}, KubernetesVersions: []string{"v1.35.4", "v1.36.3"}}, want: 4},
	}
	for _, tt := range tests {
		if got := CellCount(v1alpha1.TestRunSpec{Matrix: tt.matrix}); got != tt.want {
			t.Errorf("CellCount(%+v) = %d, want %d", tt.matrix, got, tt.want)
		}
	}
}

// notFoundReader is a fake client.Reader that finds nothing.
type notFoundReader struct{ client.Reader }

func (notFoundReader) Get(_ context.Context, key client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	return apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("testruns").GroupResource(), key.Name)
}

func TestGetNotFound(t *testing.T) {
	_, err := Get(context.Background(), notFoundReader{}, client.ObjectKey{Namespace: "team-a", Name: "nope"})
	want := `TestRun "nope" not found in namespace "team-a" ('ephemera get testruns -n team-a' lists them, -A in every namespace)`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error = %v, want it to start with %q", err, want)
	}
	if !apierrors.IsNotFound(err) {
		t.Errorf("apierrors.IsNotFound(%v) = false", err)
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		t.Errorf("error %v does not wrap the API's", err)
	}
}

func TestEmptyHint(t *testing.T) {
	want := "No TestRuns in namespace default. Create one with: kubectl --kubeconfig /s/server/kubeconfig apply -f testrun.yaml"
	if got := emptyHint("default", "/s/server/kubeconfig"); got != want {
		t.Errorf("emptyHint = %q, want %q", got, want)
	}
}
