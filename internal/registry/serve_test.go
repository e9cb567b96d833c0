package registry

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ephemera-dev/ephemera/internal/flock"
)

// daemonEnv, when set, turns the test binary into the daemon: argv
// `registry serve --registry-dir DIR`, as Ensure runs it.
const daemonEnv = "EPHEMERA_REGISTRY_TEST_DAEMON"

func TestMain(m *testing.M) {
	if os.Getenv(daemonEnv) != "" {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		dir := fs.String("registry-dir", "", "")
		args := os.Args[1:]
		if len(args) < 2 || args[0] != "registry" || args[1] != "serve" {
			os.Stderr.WriteString("helper: want registry serve, got " + strings.Join(args, " ") + "\n")
			os.Exit(2)
		}
		if err := fs.Parse(args[2:]); err != nil {
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := Serve(ctx, *dir, ""); err != nil {
			os.Stderr.WriteString("ERROR: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveInProcess runs Serve on 127.0.0.1:0 for dir until the test ends and
// returns the daemon.
func serveInProcess(t *testing.T, dir string) Daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, dir, "127.0.0.1:0") }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, ok, err := Running(dir)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return d
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Serve did not write daemon.json within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestListenFree(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	ln, err := listenFree("127.0.0.1", port, 5)
	if err != nil {
		t.Fatalf("listenFree from a taken port: %v", err)
	}
	defer ln.Close()
	got := ln.Addr().(*net.TCPAddr).Port
	if got == port || got > port+4 {
		t.Errorf("listenFree(%d, 5) listens on %d, want one of the next 4", port, got)
	}
	if _, err := listenFree("127.0.0.1", port, 1); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Errorf("listenFree with the only port taken: %v, want an error saying so", err)
	}
}

func TestServe(t *testing.T) {
	up := newUpstream(t)
	img := pushRandom(t, up.host(), "team/x", "v1")
	dir := t.TempDir()
	if err := SaveSettings(dir, Settings{CacheSize: 1 << 30, Insecure: []string{up.host()}, Mirrors: []string{up.host()}}); err != nil {
		t.Fatal(err)
	}
	d := serveInProcess(t, dir)
	if !d.Addr.Addr().IsLoopback() || d.PID != os.Getpid() {
		t.Errorf("daemon = %+v, want this process on loopback", d)
	}

	// A second daemon for the same dir is refused, naming the first.
	err := Serve(context.Background(), dir, "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "already runs") || !strings.Contains(err.Error(), d.Addr.String()) {
		t.Errorf("second Serve: %v, want an error naming the running daemon", err)
	}

	ctx := context.Background()
	// Push an archive to the local registry, by its own tag.
	archive := filepath.Join(t.TempDir(), "app.tar")
	local, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.com/team/app:v1")
	if err := tarball.WriteToFile(archive, tag, local); err != nil {
		t.Fatal(err)
	}
	names, err := PushArchive(ctx, d, archive, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := d.LocalHost() + "/team/app:v1"; len(names) != 1 || names[0] != want {
		t.Fatalf("PushArchive = %q, want [%s]", names, want)
	}
	names, err = PushArchive(ctx, d, archive, "other:v2")
	if err != nil || len(names) != 1 || names[0] != d.LocalHost()+"/other:v2" {
		t.Fatalf("PushArchive --tag other:v2 = %q, %v", names, err)
	}
	// The image is pullable by the printed name's path, on the daemon.
	ref, _ := name.ParseReference(d.Addr.String()+"/team/app:v1", name.Insecure)
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, got) != digestOf(t, local) {
		t.Errorf("pulled a different image than pushed")
	}
	// As containerd asks for it in a cluster: ns=localhost:PORT.
	got, err = remote.Image(ref, remote.WithTransport(&nsTransport{inner: daemonTransport, ns: d.LocalHost()}))
	if err != nil || digestOf(t, got) != digestOf(t, local) {
		t.Errorf("pull with ns=%s: %v", d.LocalHost(), err)
	}

	st, err := FetchStatus(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Addr != d.Addr.String() || st.Dir != dir || st.Stats.MaxBytes != 1<<30 || len(st.Local.Images) != 2 || st.Mirrors[len(st.Mirrors)-1] != up.host() {
		t.Errorf("status = %+v", st)
	}

	// Export a local image and an upstream one (through the cache).
	out := filepath.Join(t.TempDir(), "layout")
	var progress strings.Builder
	refs := []string{"team/app:v1", up.host() + "/team/x:v1", d.LocalHost() + "/other:v2"}
	if err := Export(ctx, d, out, refs, ExportOptions{Progress: &progress}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(progress.String(), "Exported "); n != 3 {
		t.Errorf("export progress:\n%s\nwant 3 lines", progress.String())
	}
	// Exporting again replaces, not duplicates.
	if err := Export(ctx, d, out, refs[:1], ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	ii, _ := p.ImageIndex()
	im, _ := ii.IndexManifest()
	byName := map[string]string{}
	for _, m := range im.Manifests {
		byName[m.Annotations[RefNameAnnotation]] = m.Digest.String()
	}
	wantNames := map[string]string{
		d.LocalHost() + "/team/app:v1": digestOf(t, local).String(),
		up.host() + "/team/x:v1":       digestOf(t, img).String(),
		d.LocalHost() + "/other:v2":    digestOf(t, local).String(),
	}
	if len(byName) != 3 || len(im.Manifests) != 3 {
		t.Errorf("layout index names %v, want 3 entries", byName)
	}
	for n, dg := range wantNames {
		if byName[n] != dg {
			t.Errorf("layout: %s is %q, want %s", n, byName[n], dg)
		}
	}
	if s := st.Stats; s.Misses != 0 {
		t.Errorf("misses before export: %d", s.Misses)
	}
	st, _ = FetchStatus(ctx, d)
	if st.Stats.Misses == 0 {
		t.Errorf("export of an upstream image did not go through the cache: %+v", st.Stats)
	}

	// Import into a second daemon: local images land in its local registry.
	d2 := serveInProcess(t, t.TempDir())
	progress.Reset()
	imported, err := Import(ctx, d2, out, &progress)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, progress.String())
	}
	{
		if len(imported) != 3 {
			t.Errorf("imported %q, want 3 images", imported)
		}
		// The second daemon serves the upstream's image from its cache,
		// with the upstream gone.
		before := up.n.Load()
		ref, _ := name.ParseReference(d2.Addr.String()+"/team/x:v1", name.Insecure)
		got, err := remote.Image(ref, remote.WithTransport(&nsTransport{inner: daemonTransport, ns: up.host()}))
		if err != nil || digestOf(t, got) != digestOf(t, img) {
			t.Errorf("pull of the imported upstream image: %v", err)
		}
		if up.n.Load() != before {
			t.Errorf("the upstream was asked %d times for an imported image", up.n.Load()-before)
		}
	}
	ref2, _ := name.ParseReference(d2.Addr.String()+"/team/app:v1", name.Insecure)
	if got, err := remote.Image(ref2); err != nil || digestOf(t, got) != digestOf(t, local) {
		t.Errorf("team/app:v1 in the second daemon after import: %v", err)
	}

	// Prune through the daemon empties the cache.
	st, err = RequestPrune(ctx, d, 0)
	if err != nil || st.Stats.Blobs != 0 {
		t.Errorf("RequestPrune(0) = %+v, %v; want an empty cache", st.Stats, err)
	}

	// Metrics.
	if n := testutil.CollectAndCount(Collector(dir)); n != 11 {
		t.Errorf("metrics of a running daemon: %d series, want 11", n)
	}
	up1 := "# HELP ephemera_registry_up Whether the host's registry daemon runs and answers (1) or not (0).\n# TYPE ephemera_registry_up gauge\nephemera_registry_up %d\n"
	if err := testutil.CollectAndCompare(Collector(dir), strings.NewReader(fmt.Sprintf(up1, 1)), "ephemera_registry_up"); err != nil {
		t.Errorf("with a daemon: %v", err)
	}
	if err := testutil.CollectAndCompare(Collector(t.TempDir()), strings.NewReader(fmt.Sprintf(up1, 0))); err != nil {
		t.Errorf("without a daemon: %v", err)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, dir, "127.0.0.1:0") }()
	var d Daemon
	for ok := false; !ok; {
		var err error
		if d, ok, err = Running(dir); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, daemonFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("daemon.json after stop: %v", err)
	}
	if flock.Held(filepath.Join(dir, daemonLock)) {
		t.Errorf("daemon.lock held after stop")
	}
	if _, ok, _ := Running(dir); ok {
		t.Errorf("Running after stop")
	}
	if _, err := http.Get(d.URL() + "/v2/"); err == nil {
		t.Errorf("the daemon still answers after stop")
	}
	// A daemon.json left by a killed daemon is not a running daemon.
	if err := os.WriteFile(filepath.Join(dir, daemonFile), []byte(`{"pid":1,"addr":"127.0.0.1:5001"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := Running(dir); ok {
		t.Errorf("a stale daemon.json without the lock counts as running")
	}
}

// TestEnsureStop starts the daemon detached as Ensure does (this test
// binary is the daemon), then stops it.
func TestEnsureStop(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(daemonEnv, "1")
	dir := t.TempDir()
	ctx := context.Background()
	d, err := Ensure(ctx, dir, exe)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(d.PID, syscall.SIGKILL) })
	if d.PID == os.Getpid() || d.Addr.Port() < DefaultPort || d.Addr.Port() >= DefaultPort+PortRange || !d.Addr.Addr().IsLoopback() {
		t.Errorf("daemon = %+v, want a child on loopback port %d..", d, DefaultPort)
	}
	sid, _ := syscall.Getpgid(d.PID)
	if sid != d.PID {
		t.Errorf("daemon's process group is %d, want its own (%d): not detached", sid, d.PID)
	}
	// A second Ensure finds it.
	d2, err := Ensure(ctx, dir, exe)
	if err != nil || d2.PID != d.PID {
		t.Errorf("second Ensure = %+v, %v; want the running daemon %d", d2, err, d.PID)
	}
	if err := Stop(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := Running(dir); ok || flock.Held(filepath.Join(dir, daemonLock)) {
		t.Errorf("daemon still running after Stop")
	}
	if syscall.Kill(d.PID, 0) == nil {
		// Reaped by Ensure's goroutine soon; a zombie answers kill 0.
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, logFile))
	if !strings.Contains(string(log), "Serving the registry") || !strings.Contains(string(log), "Stopped") {
		t.Errorf("daemon.log:\n%s\nwant the start and the clean stop", log)
	}
	if err := Stop(ctx, dir); err != nil {
		t.Errorf("Stop with no daemon: %v", err)
	}

	// A daemon that cannot start: Ensure quotes its log.
	if err := os.WriteFile(filepath.Join(dir, settingsFile), []byte(`{"upstream":"peer:5001"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Ensure(ctx, dir, exe)
	if err == nil || !strings.Contains(err.Error(), "exited at start") || !strings.Contains(err.Error(), "no scheme") {
		t.Errorf("Ensure with bad settings: %v, want the log's error", err)
	}
}
