package object

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

func TestError(t *testing.T) {
	key := client.ObjectKey{Namespace: "default", Name: "x"}
	notFound := apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("testclusters").GroupResource(), "x")
	other := errors.New("connection refused")
	tests := []struct {
		name         string
		err          error
		want         string
		wantNotFound bool
	}{
		{name: "nil", err: nil},
		{name: "not found", err: notFound, want: `TestCluster "x" not found in namespace "default"`, wantNotFound: true},
		{name: "other", err: other, want: "get TestCluster default/x: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Error("get", "TestCluster", key, tt.err)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Error(nil) = %v", err)
				}
				return
			}
			if d := cmp.Diff(tt.want, err.Error()); d != "" {
				t.Errorf("message mismatch (-want +got):\n%s", d)
			}
			if got := apierrors.IsNotFound(err); got != tt.wantNotFound {
				t.Errorf("IsNotFound = %v, want %v", got, tt.wantNotFound)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("error does not wrap %v", tt.err)
			}
		})
	}
}

func TestNamespace(t *testing.T) {
	tests := []struct {
		name    string
		ns      string
		all     bool
		names   []string
		want    string
		wantErr string
	}{
		{name: "namespace", ns: "team-a", want: "team-a"},
		{name: "names in a namespace", ns: "team-a", names: []string{"a"}, want: "team-a"},
		{name: "all", ns: "default", all: true, want: ""},
		{name: "all with names", all: true, names: []string{"a"}, wantErr: "-A lists every namespace and cannot be combined with names: name Things of one namespace with -n"},
		{name: "empty", wantErr: "--namespace must not be empty (use -A on get commands for every namespace)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Namespace(tt.ns, tt.all, tt.names, "Things")
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if d := cmp.Diff([]string{tt.want, tt.wantErr}, []string{got, gotErr}); d != "" {
				t.Errorf("Namespace mismatch (-want +got):\n%s", d)
			}
		})
	}
	if got := Where(""); got != "in any namespace" {
		t.Errorf(`Where("") = %q`, got)
	}
}

func TestPrint(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	pool := func(name string) *v1alpha1.ClusterPool {
		return &v1alpha1.ClusterPool{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
			Spec:       v1alpha1.ClusterPoolSpec{TemplateRef: "sim"},
		}
	}
	tests := []struct {
		name   string
		objs   []*v1alpha1.ClusterPool
		single bool
		want   string
	}{
		{
			name:   "one by name prints the object",
			objs:   []*v1alpha1.ClusterPool{pool("ci")},
			single: true,
			want: `apiVersion: ephemera.dev/v1alpha1
kind: ClusterPool
metadata:
  name: ci
  namespace: default
spec:
  templateRef: sim
status:
  claimed: 0
  provisioning: 0
  queued: 0
  ready: 0
  size: 0
`,
		},
		{
			name: "none prints an empty List",
			want: "apiVersion: v1\nitems: []\nkind: List\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := Print(&b, "yaml", s, tt.objs, tt.single); err != nil {
				t.Fatal(err)
			}
			got := strings.ReplaceAll(b.String(), "  creationTimestamp: null\n", "")
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Print mismatch (-want +got):\n%s", d)
			}
		})
	}
}
