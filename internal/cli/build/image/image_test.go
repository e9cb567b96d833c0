package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/exec"
	"github.com/ephemera-dev/ephemera/internal/image"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

var (
	staticOnce sync.Once
	staticBin  string
	staticErr  error
)

// staticBinary builds a tiny static Go program once.
func staticBinary(t *testing.T) string {
	t.Helper()
	staticOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ephemera-build-image-test-")
		if err != nil {
			staticErr = err
			return
		}
		src := filepath.Join(dir, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			staticErr = err
			return
		}
		_ = os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644)
		_ = os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644)
		staticBin = filepath.Join(dir, "hello")
		cmd := exec.Command(context.Background(), "go", "build", "-o", staticBin, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
		staticErr = cmd.Run()
	})
	if staticErr != nil {
		t.Fatalf("build a static binary: %v", staticErr)
	}
	return staticBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if staticBin != "" {
		os.RemoveAll(filepath.Dir(staticBin))
	}
	os.Exit(code)
}

// execute runs the build image command with args and returns its error and
// what it wrote to stderr.
func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env.Env{Out: &out, ErrOut: &errOut}
	cmd := NewCommand(e)
	cmd.SetArgs(args)
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(context.Background())
	if out.Len() > 0 {
		t.Errorf("wrote %q to stdout, want nothing", out.String())
	}
	return errOut.String(), err
}

func TestBuildImageArgumentErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.tar")
	script := filepath.Join(dir, "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := staticBinary(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "nothing", args: nil, want: []string{"missing --from-binary, --tag, -o", "ephemera build image --from-binary ./hello --tag example.com/hello:v1 -o hello.tar"}},
		{name: "no tag or output", args: []string{"--from-binary", bin}, want: []string{"missing --tag, -o"}},
		{name: "positional argument", args: []string{bin}, want: []string{"unknown command"}},
		{name: "invalid tag", args: []string{"--from-binary", bin, "--tag", "Example.com/Hello:v1", "-o", out}, want: []string{`--tag "Example.com/Hello:v1" is not a valid image name`}},
		{name: "dynamically linked", args: []string{"--from-binary", "/bin/ls", "--tag", "ls:v1", "-o", out}, want: []string{"CGO_ENABLED=0", "dynamically linked"}},
		{name: "script", args: []string{"--from-binary", script, "--tag", "sh:v1", "-o", out}, want: []string{"not a Linux program (ELF)"}},
		{name: "missing binary", args: []string{"--from-binary", filepath.Join(dir, "nope"), "--tag", "sh:v1", "-o", out}, want: []string{"no such file"}},
		{name: "relative path", args: []string{"--from-binary", bin, "--tag", "sh:v1", "-o", out, "--path", "app"}, want: []string{`--path "app" must be absolute`}},
		{name: "bad --add", args: []string{"--from-binary", bin, "--tag", "sh:v1", "-o", out, "--add", "./x.yaml"}, want: []string{`--add "./x.yaml": want HOST:IMAGEPATH`}},
		{name: "--add over the binary", args: []string{"--from-binary", bin, "--tag", "sh:v1", "-o", out, "--add", script + ":/hello"}, want: []string{"already has a file at /hello"}},
		{name: "bad --env", args: []string{"--from-binary", bin, "--tag", "sh:v1", "-o", out, "--env", "NOVALUE"}, want: []string{`--env "NOVALUE": want KEY=VALUE`}},
		{name: "output is a directory", args: []string{"--from-binary", bin, "--tag", "sh:v1", "-o", dir}, want: []string{"is a directory"}},
		{name: "output dir missing", args: []string{"--from-binary", bin, "--tag", "sh:v1", "-o", filepath.Join(dir, "no", "x.tar")}, want: []string{"does its directory exist?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := execute(t, tt.args...)
			if err == nil {
				t.Fatal("want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("an archive was written despite the error (stat: %v)", err)
			}
		})
	}
}

func TestBuildImage(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(conf, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hello.tar")
	stderr, err := execute(t, "--from-binary", staticBinary(t), "--tag", "example.com/hello:v1", "-o", out,
		"--arg=--port=8080", "--env", "MODE=test", "--user", "65534:65534", "--add", conf+":/etc/app.yaml")
	if err != nil {
		t.Fatalf("build image: %v", err)
	}
	for _, w := range []string{"Built image example.com/hello:v1 into " + out, "ephemera load image " + out + " --cluster NAME"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not contain %q", stderr, w)
		}
	}
	a, err := image.Inspect(out)
	if err != nil {
		t.Fatalf("Inspect the built archive: %v", err)
	}
	if want := []string{"example.com/hello:v1"}; !cmp.Equal(a.Names, want) {
		t.Errorf("archive names = %q, want %q", a.Names, want)
	}
	tag, _ := name.NewTag("example.com/hello:v1")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	got := []any{cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.Env, cf.Config.User}
	want := []any{[]string{"/hello"}, []string{"--port=8080"}, []string{"MODE=test"}, "65534:65534"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entrypoint, cmd, env, user (-want +got):\n%s", diff)
	}
}

func TestBuildImagePush(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- registry.Serve(ctx, dir, "127.0.0.1:0") }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	var d registry.Daemon
	for ok := false; !ok; time.Sleep(10 * time.Millisecond) {
		d, ok, _ = registry.Running(dir)
	}
	var out, errOut bytes.Buffer
	e := &env.Env{Out: &out, ErrOut: &errOut, RegistryDir: dir}
	cmd := NewCommand(e)
	cmd.SetArgs([]string{"--from-binary", staticBinary(t), "--tag", "example.com/hello:v1", "--push"})
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("build image --push: %v\n%s", err, errOut.String())
	}
	if want := d.LocalHost() + "/hello:v1\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	ref, _ := name.ParseReference(d.Addr.String()+"/hello:v1", name.Insecure)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull the pushed image: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil || cfg.OS != "linux" || cfg.Architecture != "amd64" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/hello" {
		t.Errorf("pushed image config %+v, %v", cfg, err)
	}
}
