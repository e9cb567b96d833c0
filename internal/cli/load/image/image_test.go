package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/image"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
)

// fakeProvider is a fake provider that only knows which clusters exist; it
// runs nothing and cannot load images.
type fakeProvider struct {
	name     string
	clusters []string
}

var _ provider.Provider = (*fakeProvider)(nil)

func (f *fakeProvider) Name() string { return f.name }

func (f *fakeProvider) Create(context.Context, string, v1alpha1.ClusterTemplateSpec, provider.CreateOptions) error {
	return errors.New("fake: create not supported")
}

func (f *fakeProvider) Get(_ context.Context, name string) (*provider.Cluster, error) {
	for _, c := range f.clusters {
		if c == name {
			return &provider.Cluster{Name: name, Provider: f.name, Phase: provider.PhaseRunning}, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", provider.ErrNotFound, name)
}

func (f *fakeProvider) List(context.Context) ([]provider.Cluster, error) { return nil, nil }

func (f *fakeProvider) Kubeconfig(context.Context, string) ([]byte, error) { return nil, nil }

func (f *fakeProvider) Delete(context.Context, string) error { return nil }

// loadCall is one LoadImage call a fakeLoader saw.
type loadCall struct {
	Cluster string
	// Archive is what the file handed over held at the time of the call.
	Archive image.Archive
	Path    string
}

// fakeLoader is a fake provider that can load images: it records the
// archives it is given and answers with names or err.
type fakeLoader struct {
	fakeProvider
	err   error
	calls []loadCall
}

var _ provider.ImageLoader = (*fakeLoader)(nil)

func (f *fakeLoader) LoadImage(_ context.Context, name, path string) ([]string, error) {
	a, err := image.Inspect(path)
	if err != nil {
		return nil, fmt.Errorf("fake: handed a bad archive: %w", err)
	}
	f.calls = append(f.calls, loadCall{Cluster: name, Archive: *a, Path: path})
	if f.err != nil {
		return nil, f.err
	}
	return a.Names, nil
}

// pack writes an image archive named ref into dir.
func pack(t *testing.T, dir, file, ref string) string {
	t.Helper()
	bin := filepath.Join(dir, file+".bin")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, file)
	if err := image.Pack(context.Background(), image.PackOptions{Ref: ref, Files: map[string]string{"/app": bin}, Output: out}); err != nil {
		t.Fatal(err)
	}
	return out
}

func gzipFile(t *testing.T, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// execute runs the load image command against the providers.
func execute(t *testing.T, providers []provider.Provider, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env.Env{Out: &out, ErrOut: &errOut, NewProviders: func(*env.Env) *provider.Registry { return provider.NewRegistry(providers...) }}
	cmd := NewCommand(e)
	cmd.SetArgs(args)
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestLoadImageErrors(t *testing.T) {
	dir := t.TempDir()
	good := pack(t, dir, "good.tar", "example.com/app:v1")
	empty := filepath.Join(dir, "empty.tar")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		providers func() []provider.Provider
		args      []string
		want      []string
		wantIs    error
		wantAs    bool // an *image.ArchiveError
		// wantCalls is how many archives the loader was handed.
		wantCalls int
	}{
		{name: "no archive", args: []string{"--cluster", "app"}, want: []string{"name the image archives to load", "ephemera load image app.tar --cluster NAME"}},
		{name: "no cluster", args: []string{good}, want: []string{"--cluster or --server is required", "--cluster NAME", "ephemera get clusters", "with --server"}},
		{name: "cluster and server", args: []string{good, "--cluster", "app", "--server"}, want: []string{"--server and --cluster are mutually exclusive"}},
		{name: "empty archive", args: []string{empty, "--cluster", "app"}, want: []string{empty + ": the file is empty"}, wantAs: true},
		{name: "a bad archive after a good one loads nothing", args: []string{good, empty, "--cluster", "app"}, want: []string{"the file is empty"}, wantAs: true},
		{name: "missing archive", args: []string{filepath.Join(dir, "nope.tar"), "--cluster", "app"}, wantIs: os.ErrNotExist},
		{name: "unknown cluster", args: []string{good, "--cluster", "other"}, want: []string{`cluster "other"`, "ephemera get clusters"}, wantIs: provider.ErrNotFound},
		{
			name: "provider cannot load",
			providers: func() []provider.Provider {
				return []provider.Provider{&fakeProvider{name: "sim", clusters: []string{"app"}}}
			},
			args: []string{good, "--cluster", "app"},
			want: []string{`cluster "app" cannot load images: its provider sim runs no container runtime`},
		},
		{
			name: "only simulated nodes",
			providers: func() []provider.Provider {
				return []provider.Provider{&fakeLoader{fakeProvider: fakeProvider{name: "local", clusters: []string{"app"}}, err: fmt.Errorf("%w: no real node", provider.ErrUnsupported)}}
			},
			args:      []string{good, "--cluster", "app"},
			want:      []string{`cluster "app" cannot run images`, "--real-nodes 1"},
			wantIs:    provider.ErrUnsupported,
			wantCalls: 1,
		},
		{
			name: "load fails",
			providers: func() []provider.Provider {
				return []provider.Provider{&fakeLoader{fakeProvider: fakeProvider{name: "local", clusters: []string{"app"}}, err: errors.New("containerd is not running")}}
			},
			args:      []string{good, "--cluster", "app"},
			want:      []string{"load " + good + ` into cluster "app": containerd is not running`},
			wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loader := &fakeLoader{fakeProvider: fakeProvider{name: "local", clusters: []string{"app"}}}
			providers := []provider.Provider{loader}
			if tt.providers != nil {
				providers = tt.providers()
			}
			stdout, _, err := execute(t, providers, tt.args...)
			if err == nil {
				t.Fatal("want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			var ae *image.ArchiveError
			if tt.wantAs && !errors.As(err, &ae) {
				t.Errorf("error %v is not an *image.ArchiveError", err)
			}
			calls := 0
			for _, p := range providers {
				if l, ok := p.(*fakeLoader); ok {
					calls += len(l.calls)
				}
			}
			if calls != tt.wantCalls {
				t.Errorf("loader was handed %d archives, want %d", calls, tt.wantCalls)
			}
			if stdout != "" {
				t.Errorf("stdout = %q after an error, want nothing", stdout)
			}
		})
	}
}

func TestLoadImage(t *testing.T) {
	dir := t.TempDir()
	plain := pack(t, dir, "api.tar", "example.com/api:v1")
	compressed := gzipFile(t, pack(t, dir, "worker.tar", "worker:v2"), filepath.Join(dir, "worker.tar.gz"))
	// Another provider without the cluster is skipped.
	other := &fakeProvider{name: "aaa-other"}
	loader := &fakeLoader{fakeProvider: fakeProvider{name: "local", clusters: []string{"app"}}}

	stdout, stderr, err := execute(t, []provider.Provider{other, loader}, plain, compressed, "--cluster", "app")
	if err != nil {
		t.Fatalf("load image: %v", err)
	}
	if want := "example.com/api:v1\ndocker.io/library/worker:v2\n"; stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
	for _, w := range []string{
		`Loaded ` + plain + ` into cluster "app": example.com/api:v1`,
		`Loaded ` + compressed + ` into cluster "app": docker.io/library/worker:v2`,
		"Use them in pods by name, like image: example.com/api:v1 (the default imagePullPolicy, IfNotPresent, uses the loaded copy)",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not contain %q", stderr, w)
		}
	}
	if len(loader.calls) != 2 {
		t.Fatalf("loader calls = %+v, want 2", loader.calls)
	}
	// The loader gets plain tars: the first as given, the second
	// decompressed into a temporary file that is gone afterwards.
	var got []loadCall
	for _, c := range loader.calls {
		c.Archive.Path = ""
		got = append(got, c)
	}
	want := []loadCall{
		{Cluster: "app", Path: plain, Archive: image.Archive{Format: image.FormatDocker, Names: []string{"example.com/api:v1"}}},
		{Cluster: "app", Path: loader.calls[1].Path, Archive: image.Archive{Format: image.FormatDocker, Names: []string{"docker.io/library/worker:v2"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loader calls (-want +got):\n%s", diff)
	}
	if p := loader.calls[1].Path; p == compressed {
		t.Errorf("the compressed archive was handed over as is")
	} else if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("decompressed copy %s left behind (stat: %v)", p, err)
	}
}

func TestLoadImageLatestHint(t *testing.T) {
	dir := t.TempDir()
	archive := pack(t, dir, "app.tar", "app")
	loader := &fakeLoader{fakeProvider: fakeProvider{name: "local", clusters: []string{"app"}}}
	_, stderr, err := execute(t, []provider.Provider{loader}, archive, "--cluster", "app")
	if err != nil {
		t.Fatal(err)
	}
	if want := "Use it in a pod as image: app:latest with imagePullPolicy: Never"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not contain %q", stderr, want)
	}
}

// executeServer runs the load image command with mp as the provider of the
// embedded server's management plane.
func executeServer(t *testing.T, mp provider.Provider, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env.Env{Out: &out, ErrOut: &errOut, StateDir: "/state", NewProviders: func(*env.Env) *provider.Registry {
		t.Error("--server looked at the clusters' providers")
		return provider.NewRegistry()
	}}
	cmd := newCommand(e, deps{managementPlane: func(got *env.Env) (provider.Provider, error) {
		if got != e {
			t.Errorf("managementPlane got another env")
		}
		return mp, nil
	}})
	cmd.SetArgs(args)
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// brokenProvider is a fake provider whose only cluster is Broken.
type brokenProvider struct{ fakeLoader }

func (b *brokenProvider) Get(_ context.Context, name string) (*provider.Cluster, error) {
	return &provider.Cluster{Name: name, Provider: "local", Phase: provider.PhaseBroken, Message: "kube-apiserver is not running"}, nil
}

func TestLoadImageServer(t *testing.T) {
	dir := t.TempDir()
	good := pack(t, dir, "e2e.tar", "example.com/e2e:v1")

	t.Run("loads into the management plane", func(t *testing.T) {
		mp := &fakeLoader{fakeProvider: fakeProvider{name: "local", clusters: []string{"management"}}}
		stdout, stderr, err := executeServer(t, mp, good, "--server")
		if err != nil {
			t.Fatalf("load image --server: %v", err)
		}
		if want := "example.com/e2e:v1\n"; stdout != want {
			t.Errorf("stdout = %q, want %q", stdout, want)
		}
		for _, w := range []string{
			"Loaded " + good + " into the embedded server's management plane: example.com/e2e:v1",
			"Use it in a TestRun as spec.runner.image: example.com/e2e:v1",
		} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr %q does not contain %q", stderr, w)
			}
		}
		if len(mp.calls) != 1 || mp.calls[0].Cluster != "management" {
			t.Errorf("loader calls = %+v, want one into cluster management", mp.calls)
		}
	})

	for _, tt := range []struct {
		name   string
		mp     provider.Provider
		want   string
		wantIs error
	}{
		{
			name:   "no management plane",
			mp:     &fakeLoader{fakeProvider: fakeProvider{name: "local"}},
			want:   "no embedded server here: start one with ephemera serve (state dir /state",
			wantIs: provider.ErrNotFound,
		},
		{
			name: "management plane stopped",
			mp:   &brokenProvider{fakeLoader{fakeProvider: fakeProvider{name: "local"}}},
			want: "the embedded server's management plane is Broken: kube-apiserver is not running; start it with ephemera serve",
		},
		{
			name:   "management plane without a real node",
			mp:     &fakeLoader{fakeProvider: fakeProvider{name: "local", clusters: []string{"management"}}, err: provider.ErrUnsupported},
			want:   "the embedded server's management plane has no node to run images, nor TestRun Jobs (it was made with serve --runner-node=false",
			wantIs: provider.ErrUnsupported,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := executeServer(t, tt.mp, good, "--server")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if stdout != "" {
				t.Errorf("stdout = %q after an error, want nothing", stdout)
			}
		})
	}

	// The real construction: the registry's local provider, moved by the
	// server's layout under <state dir>/server, where no serve ever ran.
	t.Run("real state dir without a server", func(t *testing.T) {
		var out, errOut bytes.Buffer
		state := t.TempDir()
		e := &env.Env{Out: &out, ErrOut: &errOut, StateDir: state, NewProviders: func(e *env.Env) *provider.Registry {
			return provider.NewRegistry(local.New(local.Options{StateDir: e.StateDir}))
		}}
		cmd := NewCommand(e)
		cmd.SetArgs([]string{good, "--server"})
		cmd.SetOut(&errOut)
		cmd.SetErr(&errOut)
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), "no embedded server here: start one with ephemera serve (state dir "+state) || !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("error = %v, want no embedded server in %s", err, state)
		}
	})
}
