package lifecycle

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// fakeProvider is a stand-in provider for the cleanup rules of Create; the
// real local provider is exercised end to end in test/e2e. Its kubeconfig
// points at a closed port, so the API never answers.
type fakeProvider struct {
	mu        sync.Mutex
	createErr error
	phase     provider.Phase
	deleted   []string
	deleteCtx error // ctx.Err() seen by Delete
	deleteErr error // returned by Delete
}

var _ provider.Provider = (*fakeProvider)(nil)

const deadKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`

func (f *fakeProvider) Name() string { return "fake" }
func (f *fakeProvider) Create(context.Context, string, v1alpha1.ClusterTemplateSpec, provider.CreateOptions) error {
	return f.createErr
}
func (f *fakeProvider) Get(_ context.Context, name string) (*provider.Cluster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &provider.Cluster{Name: name, Phase: f.phase, Message: "etcd crashed"}, nil
}
func (f *fakeProvider) List(context.Context) ([]provider.Cluster, error) { return nil, nil }
func (f *fakeProvider) Kubeconfig(context.Context, string) ([]byte, error) {
	return []byte(deadKubeconfig), nil
}
func (f *fakeProvider) Delete(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, name)
	f.deleteCtx = ctx.Err()
	return f.deleteErr
}

func TestCreateCleansUpWhatFailed(t *testing.T) {
	for _, tc := range []struct {
		name        string
		phase       provider.Phase
		retain      bool
		cancelAfter time.Duration
		deleteErr   error
		want        CreateError // Err is checked by wantErr
		wantDeleted bool
		wantErr     []string
	}{
		{"broken cluster is deleted", provider.PhaseBroken, false, 0, nil, CreateError{Deleted: true}, true, []string{"is broken: etcd crashed", "(the half-created cluster was deleted)"}},
		{"broken cluster kept with retain", provider.PhaseBroken, true, 0, nil, CreateError{Retained: true}, false, []string{"is broken", "(the cluster was kept)"}},
		{"interrupted wait deletes with a live context", provider.PhaseCreating, false, 100 * time.Millisecond, nil, CreateError{Deleted: true}, true, []string{"interrupted", "half-created cluster was deleted"}},
		{"deleted by someone else", provider.PhaseDeleting, false, 0, nil, CreateError{Deleted: true}, true, []string{"being deleted by another command"}},
		{"delete fails", provider.PhaseBroken, false, 0, errDisk, CreateError{DeleteErr: errDisk}, true, []string{"is broken", "(deleting the half-created cluster failed too: disk on fire)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeProvider{phase: tc.phase, deleteErr: tc.deleteErr}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancelAfter > 0 {
				time.AfterFunc(tc.cancelAfter, cancel)
			}
			_, err := Create(ctx, f, "c", v1alpha1.ClusterTemplateSpec{}, CreateOptions{Wait: time.Minute, APITimeout: time.Minute, Retain: tc.retain})
			if err == nil {
				t.Fatal("Create succeeded against a cluster that never works")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			// Advice for a command line (flags, commands) is the caller's.
			for _, advice := range []string{"--retain", "ephemera "} {
				if strings.Contains(err.Error(), advice) {
					t.Errorf("error %q gives advice %q", err, advice)
				}
			}
			var ce *CreateError
			if !errors.As(err, &ce) {
				t.Fatalf("error %q (%T) is not a *CreateError", err, err)
			}
			if !errors.Is(err, ErrNotReady) && !errors.Is(err, context.Canceled) {
				t.Errorf("error %q wraps neither ErrNotReady nor context.Canceled", err)
			}
			got := *ce
			got.Err = nil
			tc.want.Name = "c"
			if d := cmp.Diff(tc.want, got, cmpopts.EquateErrors()); d != "" {
				t.Errorf("CreateError mismatch (-want +got):\n%s", d)
			}
			if got := len(f.deleted) > 0; got != tc.wantDeleted {
				t.Errorf("deleted = %v, want %v", f.deleted, tc.wantDeleted)
			}
			if f.deleteCtx != nil {
				t.Errorf("Delete ran with a dead context: %v", f.deleteCtx)
			}
		})
	}
}

var errDisk = errors.New("disk on fire")

func TestCreateReportsProviderErrors(t *testing.T) {
	f := &fakeProvider{createErr: provider.ErrAlreadyExists}
	_, err := Create(context.Background(), f, "c", v1alpha1.ClusterTemplateSpec{}, CreateOptions{})
	if !errors.Is(err, provider.ErrAlreadyExists) {
		t.Errorf("err = %v, want ErrAlreadyExists", err)
	}
	if len(f.deleted) > 0 {
		t.Errorf("a refused create deleted %v: an existing cluster must be left alone", f.deleted)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f = &fakeProvider{createErr: context.Canceled}
	_, err = Create(ctx, f, "c", v1alpha1.ClusterTemplateSpec{}, CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "interrupted while preparing") {
		t.Errorf("err = %v, want it to say the create was interrupted", err)
	}
}
