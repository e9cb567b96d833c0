package templates

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
	zero, hundred := int32(0), int32(100)
	templates := []*v1alpha1.ClusterTemplate{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "sim", CreationTimestamp: metav1.NewTime(now.Add(-5 * time.Minute))},
			Spec: v1alpha1.ClusterTemplateSpec{
				Provider: v1alpha1.ProviderLocal, KubernetesVersion: "v1.36.3",
				Nodes:   v1alpha1.NodesSpec{Real: &zero, Simulated: &hundred},
				Network: v1alpha1.NetworkSpec{ServiceSubnet: "10.97.0.0/16", PodSubnet: "10.245.0.0/16"},
			},
		},
		{
			// Every default: local provider, default version, one real node.
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "real", CreationTimestamp: metav1.NewTime(now.Add(-time.Minute))},
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
			want: `NAME   PROVIDER   VERSION   REAL   SIMULATED   AGE
sim    local      v1.36.3   0      100         5m
real   local      default   1      0           60s
`,
		},
		{
			name:          "all namespaces, wide",
			allNamespaces: true,
			wide:          true,
			want: `NAMESPACE   NAME   PROVIDER   VERSION   REAL   SIMULATED   AGE   SERVICE-SUBNET   POD-SUBNET
default     sim    local      v1.36.3   0      100         5m    10.97.0.0/16     10.245.0.0/16
team-a      real   local      default   1      0           60s   default          default
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header, rows := table(templates, tt.allNamespaces, tt.wide, now)
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
