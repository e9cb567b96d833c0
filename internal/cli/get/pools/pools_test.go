package pools

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
	three, five := int32(3), int32(5)
	pools := []*v1alpha1.ClusterPool{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ci", CreationTimestamp: metav1.NewTime(now.Add(-3 * 24 * time.Hour))},
			Spec:       v1alpha1.ClusterPoolSpec{TemplateRef: "sim", MinReady: &three, MaxSize: &five},
			Status: v1alpha1.ClusterPoolStatus{
				Size: 5, Ready: 2, Provisioning: 1, Claimed: 2, Queued: 4,
				Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Message: "2 Ready clusters, minReady 3"}},
			},
		},
		{
			// Defaults: minReady 1, maxSize 10; no status yet.
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "big"},
			Spec:       v1alpha1.ClusterPoolSpec{TemplateRef: "big"},
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
			want: `NAME   TEMPLATE   MINREADY   MAXSIZE   READY   CLAIMED   QUEUED   AGE
ci     sim        3          5         2       2         4        3d
big    big        1          10        0       0         0        -
`,
		},
		{
			name:          "all namespaces, wide",
			allNamespaces: true,
			wide:          true,
			want: `NAMESPACE   NAME   TEMPLATE   MINREADY   MAXSIZE   READY   CLAIMED   QUEUED   AGE   SIZE   PROVISIONING   MESSAGE
default     ci     sim        3          5         2       2         4        3d    5      1              2 Ready clusters, minReady 3
team-a      big    big        1          10        0       0         0        -     0      0              -
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header, rows := table(pools, tt.allNamespaces, tt.wide, now)
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
