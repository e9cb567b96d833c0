package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/fake"
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

// TestRefusedBeforeCreating runs the command against a fake provider: bad
// labels and addons that name what does not exist are refused before the
// provider is asked for anything.
func TestRefusedBeforeCreating(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	if err := os.WriteFile(missing, []byte(`apiVersion: ephemera.dev/v1alpha1
kind: ClusterTemplate
metadata: {name: demo}
spec:
  nodes: {simulated: 1}
  addons:
  - name: operators
    manifests:
    - path: ./crds/
`), 0o644); err != nil {
		t.Fatal(err)
	}
	unknownFact := filepath.Join(dir, "fact.yaml")
	if err := os.WriteFile(unknownFact, []byte(`apiVersion: ephemera.dev/v1alpha1
kind: ClusterTemplate
metadata: {name: demo}
spec:
  nodes: {simulated: 1}
  addons:
  - name: apps
    manifests:
    - inline: |
        apiVersion: v1
        kind: Namespace
        metadata: {name: "{{ .Nmae }}"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	missingLabel := filepath.Join(dir, "label.yaml")
	if err := os.WriteFile(missingLabel, []byte(`apiVersion: ephemera.dev/v1alpha1
kind: ClusterTemplate
metadata: {name: demo}
spec:
  nodes: {simulated: 1}
  addons:
  - name: apps
    manifests:
    - inline: |
        apiVersion: v1
        kind: Namespace
        metadata: {name: "team-{{ .Labels.pr }}"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		args    []string
		wantErr []string
	}{
		{"label not set", []string{"-f", missingLabel, "--label", "repo=app"}, []string{`create cluster "demo": addons: phase apps`, `"pr"`}},
		{"bad label", []string{"demo", "--simulated-nodes", "1", "--label", "pr"}, []string{`--label "pr": want KEY=VALUE`}},
		{"reserved label", []string{"demo", "--simulated-nodes", "1", "--label", "ephemera.dev/server=x"}, []string{"ephemera's own"}},
		{"missing addon path", []string{"-f", missing}, []string{`create cluster "demo": addons: phase operators`, "crds"}},
		{"unknown fact", []string{"-f", unknownFact}, []string{`create cluster "demo": addons: phase apps`, "Nmae"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := fake.New()
			var out, errOut bytes.Buffer
			e := &env.Env{Out: &out, ErrOut: &errOut, NewProviders: func(*env.Env) *provider.Registry {
				return provider.NewRegistry(&named{f, "local"})
			}}
			cmd := NewCommand(e)
			cmd.SetArgs(tt.args)
			cmd.SetOut(&errOut)
			cmd.SetErr(&errOut)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.ExecuteContext(context.Background())
			if err == nil {
				t.Fatal("create succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if f.Has("demo") {
				t.Error("the cluster was created")
			}
		})
	}
}

// named is a fake provider registered under another name.
type named struct {
	*fake.Provider
	name string
}

func (n *named) Name() string { return n.name }
