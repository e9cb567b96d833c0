package admission

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
)

func TestFailureCondition(t *testing.T) {
	pe := &addons.PhaseError{Phase: "operators", Item: "Deployment cert-manager/cert-manager", Reason: "not Available: pod cert-manager-x: ImagePullBackOff"}
	tests := []struct {
		name       string
		err        error
		failures   int
		retryIn    time.Duration
		wantReason string
		wantMsg    string
	}{
		{"a failed phase, deleted", &lifecycle.CreateError{Name: "ci-x", Err: pe, Deleted: true}, 1, 10 * time.Second, v1alpha1.ReasonAddonsFailed,
			"the addons of a new cluster failed, so it was deleted; another is built in 10s: phase operators: Deployment cert-manager/cert-manager not Available: pod cert-manager-x: ImagePullBackOff"},
		{"a failed phase, again", fmt.Errorf("wrapped: %w", pe), 3, 39700 * time.Millisecond, v1alpha1.ReasonAddonsFailed,
			"the addons of a new cluster failed (3 times in a row), so it was deleted; another is built in 40s: " + pe.Error()},
		{"addons unreadable", fmt.Errorf("%w: phase crs: ConfigMap crs not found", lifecycle.ErrAddons), 2, 20 * time.Second, v1alpha1.ReasonAddonsFailed,
			"the template's addons cannot be installed (2 times in a row); another is built in 20s: addons: phase crs: ConfigMap crs not found"},
		{"the cluster failed", errors.New("etcd did not start"), 1, 10 * time.Second, v1alpha1.ReasonProvisionFailed,
			"creating a cluster failed; another is built in 10s: etcd did not start"},
		{"no error known", nil, 1, 10 * time.Second, v1alpha1.ReasonProvisionFailed, "creating a cluster failed; another is built in 10s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, msg := failureCondition(tt.err, tt.failures, tt.retryIn)
			if reason != tt.wantReason || msg != tt.wantMsg {
				t.Errorf("failureCondition = %q, %q\nwant %q, %q", reason, msg, tt.wantReason, tt.wantMsg)
			}
		})
	}
}
