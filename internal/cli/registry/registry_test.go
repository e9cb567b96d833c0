package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	pushcmd "github.com/ephemera-dev/ephemera/internal/cli/push"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

// execute runs `registry ARGS...` (or `push ARGS...` when args[0] is push)
// with the registry dir dir.
func execute(t *testing.T, dir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env.Env{Out: &out, ErrOut: &errOut, RegistryDir: dir}
	cmd := NewCommand(e)
	if args[0] == "push" {
		cmd, args = pushcmd.NewCommand(e), args[1:]
	}
	cmd.SetArgs(args)
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// serveDaemon runs the daemon of dir in this process until the test ends.
func serveDaemon(t *testing.T, dir string) registry.Daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- registry.Serve(ctx, dir, "127.0.0.1:0") }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if d, ok, _ := registry.Running(dir); ok {
			return d
		}
	}
	t.Fatal("the daemon did not start")
	return registry.Daemon{}
}

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	_, _, err := execute(t, dir, "configure", "--cache-size", "20GB")
	if err == nil || !strings.Contains(err.Error(), "--cache-size") || !strings.Contains(err.Error(), "20Gi") {
		t.Errorf("configure --cache-size 20GB: %v, want an error with an example", err)
	}
	_, _, err = execute(t, dir, "configure", "--registry-upstream", "http://10.0.0.1:5001")
	if err == nil || !strings.Contains(err.Error(), "--insecure-registry 10.0.0.1:5001") {
		t.Errorf("plain-HTTP upstream: %v, want the fix", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "settings.json")); err == nil {
		t.Errorf("invalid settings were saved")
	}
	pw := filepath.Join(t.TempDir(), "pw")
	_ = os.WriteFile(pw, []byte("secret\n"), 0o600)
	_, stderr, err := execute(t, dir, "configure", "--cache-size", "20Gi", "--registry-upstream", "http://10.0.0.1:5001/",
		"--insecure-registry", "10.0.0.1:5001", "--registry-upstream-username", "ci", "--registry-upstream-password-file", pw,
		"--registry-mirror", "r.example.com", "--registry-mirror", "r2.example.com:5000")
	if err != nil {
		t.Fatalf("configure: %v\n%s", err, stderr)
	}
	s, err := registry.LoadSettings(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.CacheSize != 20<<30 || s.Upstream != "http://10.0.0.1:5001" || s.UpstreamUsername != "ci" || s.UpstreamPasswordFile != pw || len(s.Mirrors) != 2 {
		t.Errorf("saved %+v", s)
	}
	// Flags not given are kept; a list flag replaces the list.
	if _, stderr, err = execute(t, dir, "configure", "--registry-mirror", "r3.example.com"); err != nil {
		t.Fatalf("configure: %v\n%s", err, stderr)
	}
	s, _ = registry.LoadSettings(dir)
	if s.CacheSize != 20<<30 || strings.Join(s.Mirrors, ",") != "r3.example.com" {
		t.Errorf("after a second configure: %+v", s)
	}
	stdout, _, err := execute(t, dir, "configure")
	if err != nil || !strings.Contains(stdout, "20.0 GiB") || !strings.Contains(stdout, "r3.example.com") || !strings.Contains(stdout, "user ci") {
		t.Errorf("configure without flags: %v\n%s", err, stdout)
	}
	if _, _, err = execute(t, dir, "configure", "--reset"); err != nil {
		t.Fatal(err)
	}
	if s, _ = registry.LoadSettings(dir); s.CacheSize != 0 || s.Upstream != "" || s.Mirrors != nil {
		t.Errorf("after --reset: %+v", s)
	}
}

func TestStatusPushPrune(t *testing.T) {
	dir := t.TempDir()
	_, _, err := execute(t, dir, "status")
	if err == nil || !strings.Contains(err.Error(), "not running") || !strings.Contains(err.Error(), "ephemera registry start") {
		t.Errorf("status without a daemon: %v", err)
	}
	if _, _, err := execute(t, dir, "configure", "--cache-size", "1Gi"); err != nil {
		t.Fatal(err)
	}
	d := serveDaemon(t, dir)

	archive := filepath.Join(t.TempDir(), "app.tar")
	img, _ := random.Image(512, 1)
	tag, _ := name.NewTag("example.com/app:v1")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := execute(t, dir, "push", "image", archive)
	if err != nil {
		t.Fatalf("push image: %v\n%s", err, stderr)
	}
	if want := d.LocalHost() + "/app:v1\n"; stdout != want {
		t.Errorf("push image printed %q, want %q", stdout, want)
	}
	if stdout, _, err = execute(t, dir, "push", "image", archive, "--tag", "localhost:5001/other:v2"); err != nil || stdout != d.LocalHost()+"/other:v2\n" {
		t.Errorf("push image --tag localhost:5001/other:v2: %q, %v", stdout, err)
	}
	if _, _, err = execute(t, dir, "push", "image", archive, "--tag", "Bad:Tag"); err == nil {
		t.Errorf("push image --tag Bad:Tag: no error")
	}

	stdout, _, err = execute(t, dir, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{d.Addr.String(), dir, "cap 1.0 GiB", "hit ratio", "docker.io, registry.k8s.io", "Local images:      2", d.LocalHost() + "/app:v1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, err = execute(t, dir, "status", "-o", "json")
	var st registry.Status
	if err != nil || json.Unmarshal([]byte(stdout), &st) != nil || st.PID != d.PID || len(st.Local.Images) != 2 {
		t.Errorf("status -o json: %v\n%s", err, stdout)
	}
	if _, stderr, err = execute(t, dir, "prune", "--size", "1Mi"); err != nil || !strings.Contains(stderr, "Pruned") {
		t.Errorf("prune: %v\n%s", err, stderr)
	}
	// Export needs no image from the network: a local one.
	out := filepath.Join(t.TempDir(), "layout")
	if _, stderr, err = execute(t, dir, "export", "--dir", out, "app:v1"); err != nil || !strings.Contains(stderr, "Exported "+d.LocalHost()+"/app:v1") {
		t.Errorf("export: %v\n%s", err, stderr)
	}
	if _, stderr, err = execute(t, dir, "import", "--dir", out); err != nil || !strings.Contains(stderr, "Imported "+d.LocalHost()+"/app:v1 into the local registry") {
		t.Errorf("import: %v\n%s", err, stderr)
	}
	if _, _, err = execute(t, dir, "import", "--dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Errorf("import of an empty dir: %v", err)
	}
}

func TestPruneAndPurgeWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, err := execute(t, dir, "prune"); err != nil {
		t.Errorf("prune without a daemon: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache")); err != nil {
		t.Errorf("prune without a daemon did not open the store: %v", err)
	}
	// --purge refuses a dir that is not a registry dir.
	if err := os.WriteFile(filepath.Join(dir, "precious.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := execute(t, dir, "stop", "--purge"); err == nil || !strings.Contains(err.Error(), "precious.txt") {
		t.Errorf("stop --purge of a dir with other files: %v", err)
	}
	os.Remove(filepath.Join(dir, "precious.txt"))
	if _, stderr, err := execute(t, dir, "stop", "--purge"); err != nil || !strings.Contains(stderr, "Removed") {
		t.Errorf("stop --purge: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("registry dir after --purge: %v", err)
	}
}

// TestConfigureRootFlags: the root's persistent flags are no settings.
func TestConfigureRootFlags(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	e := &env.Env{Out: &out, ErrOut: &errOut}
	root := &cobra.Command{Use: "ephemera"}
	root.PersistentFlags().StringVar(&e.RegistryDir, "registry-dir", "", "")
	root.AddCommand(NewCommand(e))
	root.SetArgs([]string{"--registry-dir", dir, "registry", "configure"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "settings.json")); err == nil || !strings.Contains(out.String(), "cache size") {
		t.Errorf("configure with only --registry-dir saved settings (%v) or printed none:\n%s", err, out.String())
	}
}
