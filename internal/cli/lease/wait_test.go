package lease

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

func TestWaitError(t *testing.T) {
	tc := &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ci-abcde"},
		Spec:       v1alpha1.TestClusterSpec{PoolRef: "ci"},
	}
	err := waitError(context.Background(), tc, 10*time.Minute)
	for _, w := range []string{"TestCluster default/ci-abcde is not Ready after 10m0s", "still Requesting a cluster from pool ci", "is 'ephemera serve' running?", "It is kept", "ephemera delete testcluster ci-abcde -n default"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tc.Status = v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued, QueuePosition: 4}
	err = waitError(ctx, tc, time.Minute)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted, still Queued: position 4 in pool ci. It is kept") || strings.Contains(err.Error(), "ephemera serve") {
		t.Errorf("interrupted error = %q", err)
	}
}

func TestWriteKubeconfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfigs", "default", "ci-abcde")
	for _, content := range []string{"first", "second"} { // the second overwrites
		got, err := WriteKubeconfig(path, []byte(content))
		if err != nil {
			t.Fatalf("writeKubeconfig: %v", err)
		}
		if got != path {
			t.Errorf("path = %q, want %q", got, path)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("content = %q, want %q", b, content)
		}
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("dir has %d entries, want only the kubeconfig (no temp files)", len(entries))
	}
}

func TestObserveWithoutRequests(t *testing.T) {
	cond := func(reason, msg string) []metav1.Condition {
		return []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg}}
	}
	tests := []struct {
		name    string
		status  v1alpha1.TestClusterStatus
		wantErr string // empty: keep waiting
	}{
		{name: "no status yet"},
		{name: "queued", status: v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued, QueuePosition: 2, Conditions: cond(v1alpha1.ReasonQueued, "waiting")}},
		{name: "provisioning", status: v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterProvisioning}},
		{
			name:    "failed",
			status:  v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterFailed, Conditions: cond(v1alpha1.ReasonProvisionFailed, `creating cluster "x" failed: no space`)},
			wantErr: `TestCluster default/e2e failed: creating cluster "x" failed: no space; delete it with 'ephemera delete testcluster e2e -n default'`,
		},
		{
			name:    "failed without a message",
			status:  v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterFailed},
			wantErr: "TestCluster default/e2e failed: no reason given;",
		},
		{
			name:    "lease ended",
			status:  v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterDeleting, Conditions: cond(v1alpha1.ReasonLeaseExpired, "the lease ended at 2026-03-01T12:00:00Z")},
			wantErr: "TestCluster default/e2e is being deleted before it was Ready: the lease ended at 2026-03-01T12:00:00Z",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "e2e"}, Spec: v1alpha1.TestClusterSpec{TemplateRef: "big"}, Status: tt.status}
			w := &waiter{tc: tc} // no client: these states need no request
			kc, err := w.observe(context.Background())
			if kc != nil {
				t.Errorf("kubeconfig = %q, want none", kc)
			}
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tt.wantErr == "" && got != "" || !strings.Contains(got, tt.wantErr) {
				t.Errorf("observe error = %q, want %q", got, tt.wantErr)
			}
		})
	}
}
