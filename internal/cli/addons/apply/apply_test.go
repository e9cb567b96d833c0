package apply

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/progress"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/fake"
)

const template = `apiVersion: ephemera.dev/v1alpha1
kind: ClusterTemplate
metadata:
  name: demo
spec:
  addons:
  - name: operators
    manifests:
    - path: ./crds/
  - name: apps
    charts:
    - name: web
      chart: ./charts/web
`

// call is what a fake install or validate was handed.
type call struct {
	Cluster string
	Phases  []string
	Opts    lifecycle.AddonOptions
}

// recorder stands in for lifecycle.ValidateAddons and InstallAddons, which
// need a running cluster and are tested with one in internal/addons and
// test/e2e; it records its calls and answers with the errors it is given.
type recorder struct {
	validateErr, installErr error
	validated, installed    []call
}

func names(phases []v1alpha1.AddonPhase) []string {
	var out []string
	for _, p := range phases {
		out = append(out, p.Name)
	}
	return out
}

func (r *recorder) deps() deps {
	return deps{
		validate: func(_ context.Context, phases []v1alpha1.AddonPhase, opts lifecycle.AddonOptions, _ progress.Reporter) error {
			r.validated = append(r.validated, call{Phases: names(phases), Opts: opts})
			return r.validateErr
		},
		install: func(_ context.Context, _ provider.Provider, name string, phases []v1alpha1.AddonPhase, opts lifecycle.AddonOptions, _ progress.Reporter) (addons.Result, error) {
			r.installed = append(r.installed, call{Cluster: name, Phases: names(phases), Opts: opts})
			if r.installErr != nil {
				return addons.Result{}, r.installErr
			}
			return addons.Result{Phases: []addons.PhaseResult{{Name: "operators", Duration: 1500 * time.Millisecond}, {Name: "apps", Duration: 2 * time.Second}}}, nil
		},
	}
}

func execute(t *testing.T, f *fake.Provider, r *recorder, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env.Env{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut, NewProviders: func(*env.Env) *provider.Registry { return provider.NewRegistry(f) }}
	cmd := newCommand(e, r.deps())
	cmd.SetArgs(args)
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	if out.Len() > 0 {
		t.Errorf("stdout = %q; the command writes only to stderr", out.String())
	}
	return errOut.String(), err
}

func TestApply(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "template.yaml")
	if err := os.WriteFile(file, []byte(template), 0o644); err != nil {
		t.Fatal(err)
	}
	f := fake.New(provider.Cluster{Name: "demo", Phase: provider.PhaseRunning,
		Labels: map[string]string{"pr": "41", "repo": "app", "ephemera.dev/server": "s"}})
	r := &recorder{}
	stderr, err := execute(t, f, r, "", "-f", file, "--cluster", "demo", "--label", "pr=42,team=x")
	if err != nil {
		t.Fatal(err)
	}
	want := call{Cluster: "demo", Phases: []string{"operators", "apps"}, Opts: lifecycle.AddonOptions{
		Sources: addons.Sources{Dir: dir},
		// The cluster's labels, but ephemera's own, under --label.
		Labels: map[string]string{"pr": "42", "repo": "app", "team": "x"},
	}}
	if d := cmp.Diff([]call{want}, r.installed); d != "" {
		t.Errorf("install calls (-want +got):\n%s", d)
	}
	want.Cluster = ""
	if d := cmp.Diff([]call{want}, r.validated); d != "" {
		t.Errorf("validate calls (-want +got):\n%s", d)
	}
	if !strings.Contains(stderr, `The addons of cluster "demo" are ready after`) || !strings.Contains(stderr, "(operators 1.5s, apps 2s)") {
		t.Errorf("stderr %q does not report the phases and their durations", stderr)
	}

	// From stdin, relative paths are relative to the working directory.
	r = &recorder{}
	if _, err := execute(t, f, r, template, "-f", "-", "--cluster", "demo"); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if len(r.installed) != 1 || r.installed[0].Opts.Sources.Dir != wd {
		t.Errorf("install calls %+v, want one with Dir %s", r.installed, wd)
	}
}

func TestApplyErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "template.yaml")
	if err := os.WriteFile(file, []byte(template), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, []byte("apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata: {name: e}\nspec: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	phaseErr := &addons.PhaseError{Phase: "operators", Item: "Deployment cm/cm", Reason: "not Available: pod cm-x: ImagePullBackOff"}
	tests := []struct {
		name        string
		args        []string
		r           recorder
		wantErr     []string
		wantIs      error
		wantInstall bool
	}{
		{name: "no flags", args: nil, wantErr: []string{"-f and --cluster are required"}},
		{name: "no file", args: []string{"--cluster", "demo"}, wantErr: []string{"-f is required"}},
		{name: "no cluster", args: []string{"-f", file}, wantErr: []string{"--cluster is required", "ephemera get clusters"}},
		{name: "argument", args: []string{"-f", file, "--cluster", "demo", "extra"}, wantErr: []string{`unknown command "extra"`}},
		{name: "bad label", args: []string{"-f", file, "--cluster", "demo", "--label", "pr"}, wantErr: []string{`--label "pr": want KEY=VALUE`}},
		{name: "reserved label", args: []string{"-f", file, "--cluster", "demo", "--label", "ephemera.dev/pool=x"}, wantErr: []string{"ephemera's own"}},
		{name: "missing file", args: []string{"-f", filepath.Join(dir, "nope.yaml"), "--cluster", "demo"}, wantErr: []string{"read cluster file"}, wantIs: fs.ErrNotExist},
		{name: "no addons", args: []string{"-f", empty, "--cluster", "demo"}, wantErr: []string{"has no spec.addons: nothing to install"}},
		{name: "unknown cluster", args: []string{"-f", file, "--cluster", "nosuch"}, wantErr: []string{`cluster "nosuch"`, "ephemera get clusters"}, wantIs: provider.ErrNotFound},
		{name: "invalid addons", args: []string{"-f", file, "--cluster", "demo"}, r: recorder{validateErr: errors.New("addons: phase operators: ./crds/: no such file")},
			wantErr: []string{`apply addons to cluster "demo": addons: phase operators: ./crds/: no such file`}},
		{name: "failed phase", args: []string{"-f", file, "--cluster", "demo"}, r: recorder{installErr: phaseErr}, wantInstall: true,
			wantErr: []string{`apply addons to cluster "demo": phase operators: Deployment cm/cm not Available: pod cm-x: ImagePullBackOff`}, wantIs: phaseErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fake.New(provider.Cluster{Name: "demo", Phase: provider.PhaseRunning})
			_, err := execute(t, f, &tt.r, "", tt.args...)
			if err == nil {
				t.Fatal("apply succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if got := len(tt.r.installed) > 0; got != tt.wantInstall {
				t.Errorf("installed = %v, want %v (nothing may be installed when the input is bad)", tt.r.installed, tt.wantInstall)
			}
		})
	}
}

func TestFactLabels(t *testing.T) {
	got := factLabels(map[string]string{"ephemera.dev/pool": "p", "repo": "a", "pr": "1"}, map[string]string{"pr": "2"})
	if d := cmp.Diff(map[string]string{"repo": "a", "pr": "2"}, got); d != "" {
		t.Errorf("factLabels (-want +got):\n%s", d)
	}
	if got := factLabels(nil, nil); got == nil || len(got) != 0 {
		t.Errorf("factLabels(nil, nil) = %#v, want an empty map", got)
	}
}
