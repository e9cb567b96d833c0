package testclusters

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

func TestTable(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	tcs := []*v1alpha1.TestCluster{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ci-abcde", CreationTimestamp: *at(-time.Minute)},
			Spec:       v1alpha1.TestClusterSpec{PoolRef: "ci", ClusterName: "ci-x1y2z"},
			Status: v1alpha1.TestClusterStatus{
				Phase: v1alpha1.TestClusterReady, Endpoint: "https://127.0.0.1:30784", ExpiresAt: at(29*time.Minute + 30*time.Second),
				Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Message: `cluster "ci-x1y2z" is ready`}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "ci-fghij", CreationTimestamp: *at(-10 * time.Second)},
			Spec:       v1alpha1.TestClusterSpec{PoolRef: "ci"},
			Status: v1alpha1.TestClusterStatus{
				Phase: v1alpha1.TestClusterQueued, QueuePosition: 3,
				Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Message: "waiting for a Ready cluster of pool \"ci\" (position 3)"}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "big", CreationTimestamp: *at(-2 * time.Hour)},
			Spec:       v1alpha1.TestClusterSpec{TemplateRef: "big", ClusterName: "big-k2l3m"},
			Status:     v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterDeleting, ExpiresAt: at(-time.Minute)},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "new"},
			Spec:       v1alpha1.TestClusterSpec{TemplateRef: "big"},
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
			want: `NAME       PHASE      POOL/TEMPLATE   CLUSTER     QUEUE   EXPIRES   AGE
ci-abcde   Ready      pool/ci         ci-x1y2z    -       in 29m    60s
ci-fghij   Queued     pool/ci         -           3       -         10s
big        Deleting   template/big    big-k2l3m   -       60s ago   120m
new        -          template/big    -           -       -         -
`,
		},
		{
			name:          "all namespaces, wide",
			allNamespaces: true,
			wide:          true,
			want: `NAMESPACE   NAME       PHASE      POOL/TEMPLATE   CLUSTER     QUEUE   EXPIRES   AGE    ENDPOINT                  MESSAGE
default     ci-abcde   Ready      pool/ci         ci-x1y2z    -       in 29m    60s    https://127.0.0.1:30784   cluster "ci-x1y2z" is ready
team-a      ci-fghij   Queued     pool/ci         -           3       -         10s    -                         waiting for a Ready cluster of pool "ci" (position 3)
default     big        Deleting   template/big    big-k2l3m   -       60s ago   120m   -                         -
default     new        -          template/big    -           -       -         -      -                         -
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header, rows := table(tcs, tt.allNamespaces, tt.wide, now)
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
