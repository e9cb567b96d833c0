package testcluster

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    options
		wantErr string
	}{
		{name: "defaults", opts: options{namespace: "default", wait: 2 * time.Minute}},
		{name: "no wait", opts: options{namespace: "default"}},
		{name: "negative wait", opts: options{namespace: "default", wait: -time.Second}, wantErr: "--wait -1s: must not be negative"},
		{name: "empty namespace", opts: options{}, wantErr: "--namespace must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validate(&tt.opts)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tt.wantErr == "" && got != "" || !strings.Contains(got, tt.wantErr) {
				t.Errorf("validate = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestLeftError(t *testing.T) {
	pending := map[string]*v1alpha1.TestCluster{
		"b": {
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "b", Finalizers: []string{"ephemera.dev/cluster"}},
			Status: v1alpha1.TestClusterStatus{
				Phase:      v1alpha1.TestClusterDeleting,
				Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Message: "deleting cluster b-x1y2z"}},
			},
		},
		"a": {ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "a"}},
	}
	want := "TestCluster default/a is still there after 2m0s: no status; the server keeps deleting it\n" +
		"TestCluster default/b is still there after 2m0s: phase Deleting, deleting cluster b-x1y2z; waiting for finalizers ephemera.dev/cluster (is 'ephemera serve' running?); the server keeps deleting it"
	if d := cmp.Diff(want, leftError(pending, 2*time.Minute).Error()); d != "" {
		t.Errorf("leftError mismatch (-want +got):\n%s", d)
	}
}
