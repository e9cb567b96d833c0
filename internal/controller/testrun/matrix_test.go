package testrun

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// TestMatrixCellsThatCannotBeMade runs the reconciler against
// controller-runtime's fake client (named so): a matrix whose cell cannot
// be made ends with the reason, once, instead of failing every reconcile.
func TestMatrixCellsThatCannotBeMade(t *testing.T) {
	matrix := func() *v1alpha1.TestRun {
		return &v1alpha1.TestRun{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "run", UID: "uid-run"},
			Spec: v1alpha1.TestRunSpec{
				Runner: v1alpha1.TestRunner{Image: "x"},
				Matrix: &v1alpha1.TestRunMatrix{Templates: []string{"a", "b"}},
			},
		}
	}
	refuseCells := interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if _, ok := obj.(*v1alpha1.TestRun); ok && obj.GetName() == "run-2" {
			return apierrors.NewInvalid(schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: "TestRun"}, obj.GetName(),
				field.ErrorList{field.Invalid(field.NewPath("spec"), "", "set exactly one of spec.cluster.poolRef")})
		}
		return c.Create(ctx, obj, opts...)
	}}
	for _, tc := range []struct {
		name  string
		objs  []client.Object
		funcs interceptor.Funcs
		want  []string
	}{
		{"a cell's name is taken", []client.Object{&v1alpha1.TestRun{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "run-2"}}},
			interceptor.Funcs{}, []string{`TestRun named "run-2" exists already`, "rename the run"}},
		{"the API refuses a cell", nil, refuseCells, []string{`cell b: its TestRun "run-2" was refused`, "spec.cluster.poolRef"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := runtime.NewScheme()
			_ = clientgoscheme.AddToScheme(s)
			_ = v1alpha1.AddToScheme(s)
			c := fakeclient.NewClientBuilder().WithScheme(s).WithObjects(append(tc.objs, matrix())...).
				WithStatusSubresource(&v1alpha1.TestRun{}).WithInterceptorFuncs(tc.funcs).Build()
			r := &Reconciler{Client: c, Reader: c, Now: func() time.Time { return time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC) }}
			key := client.ObjectKey{Namespace: "ns", Name: "run"}
			if _, err := r.Reconcile(t.Context(), reconcile.Request{NamespacedName: key}); err != nil {
				t.Fatalf("reconcile: %v; want the run ended with the reason", err)
			}
			run := &v1alpha1.TestRun{}
			if err := c.Get(t.Context(), key, run); err != nil {
				t.Fatal(err)
			}
			complete := meta.FindStatusCondition(run.Status.Conditions, v1alpha1.ConditionComplete)
			if complete == nil || complete.Status != metav1.ConditionTrue || PhaseOf(run) != v1alpha1.TestRunError {
				t.Fatalf("run is %s with Complete %+v; want Error", PhaseOf(run), complete)
			}
			for _, w := range tc.want {
				if !strings.Contains(complete.Message, w) {
					t.Errorf("Complete says %q; want it to say %q", complete.Message, w)
				}
			}
			// The cell it made is deleted: it would hold a cluster for
			// nothing.
			if err := c.Get(t.Context(), client.ObjectKey{Namespace: "ns", Name: "run-1"}, &v1alpha1.TestRun{}); !apierrors.IsNotFound(err) {
				t.Errorf("cell run-1 is still there (err %v)", err)
			}
		})
	}
}
