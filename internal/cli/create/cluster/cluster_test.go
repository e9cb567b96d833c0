package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/internal/lifecycle"
)

func TestWithHint(t *testing.T) {
	cause := fmt.Errorf("%w after 1m0s: waiting for kube-apiserver", lifecycle.ErrNotReady)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{
			name: "deleted",
			err:  &lifecycle.CreateError{Name: "app", Err: cause, Deleted: true},
			want: "cluster not ready after 1m0s: waiting for kube-apiserver\n(the half-created cluster was deleted; pass --retain to keep it for debugging)",
		},
		{
			name: "retained",
			err:  &lifecycle.CreateError{Name: "app", Err: cause, Retained: true},
			want: "cluster not ready after 1m0s: waiting for kube-apiserver\n(the cluster was kept because of --retain; remove it with: ephemera delete cluster app)",
		},
		{
			name: "delete failed",
			err:  &lifecycle.CreateError{Name: "app", Err: cause, DeleteErr: errors.New("disk on fire")},
			want: "cluster not ready after 1m0s: waiting for kube-apiserver\n(deleting the half-created cluster failed too: disk on fire; remove it with: ephemera delete cluster app)",
		},
		{
			name: "not a create error",
			err:  context.Canceled,
			want: "context canceled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := withHint(tt.err)
			if d := cmp.Diff(tt.want, got.Error()); d != "" {
				t.Errorf("message mismatch (-want +got):\n%s", d)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("%v does not wrap %v", got, tt.err)
			}
		})
	}
}
