package env

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestServerMapper(t *testing.T) {
	m := serverMapper(serverScheme())
	tests := []struct {
		gk   schema.GroupKind
		want string
	}{
		{gk: schema.GroupKind{Group: "ephemera.dev", Kind: "TestCluster"}, want: "testclusters"},
		{gk: schema.GroupKind{Group: "ephemera.dev", Kind: "ClusterPool"}, want: "clusterpools"},
		{gk: schema.GroupKind{Group: "ephemera.dev", Kind: "ClusterTemplate"}, want: "clustertemplates"},
		{gk: schema.GroupKind{Kind: "Secret"}, want: "secrets"},
	}
	for _, tt := range tests {
		t.Run(tt.gk.String(), func(t *testing.T) {
			got, err := m.RESTMapping(tt.gk)
			if err != nil {
				t.Fatalf("RESTMapping: %v", err)
			}
			if d := cmp.Diff(tt.want, got.Resource.Resource); d != "" {
				t.Errorf("resource mismatch (-want +got):\n%s", d)
			}
			if got.Scope.Name() != meta.RESTScopeNameNamespace {
				t.Errorf("scope = %s, want namespace", got.Scope.Name())
			}
		})
	}
	for _, gk := range []schema.GroupKind{{Group: "apps", Kind: "Deployment"}, {Group: "ephemera.dev", Kind: "TestClusterList"}, {Group: "ephemera.dev", Kind: "ListOptions"}} {
		if _, err := m.RESTMapping(gk); !meta.IsNoMatchError(err) {
			t.Errorf("RESTMapping(%s) error = %v, want a no-match error", gk, err)
		}
	}
}
