package e2e

import (
	"bytes"
	"context"
	"fmt"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Versions the tests need installed (hack/setup.sh installs them).
const (
	newVersion = "v1.36.3"
	oldVersion = "v1.35.4"
)

var ephemeraBin string

// scratchDir holds what the tests build once per run (the ephemera binary,
// example images); it goes when the run ends.
var scratchDir string

// exampleImage is a program of examples/ packed into an image archive with
// `ephemera build image`, built once per test run.
type exampleImage struct {
	pkg, tag string

	once    sync.Once
	archive string
	err     error
}

// archiveFor builds the image the first time and returns its archive.
func (x *exampleImage) archiveFor(t testing.TB) string {
	t.Helper()
	x.once.Do(func() {
		bin := filepath.Join(scratchDir, x.pkg)
		build := osexec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "../../examples/"+x.pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			x.err = fmt.Errorf("build %s: %w\n%s", x.pkg, err, out)
			return
		}
		x.archive = filepath.Join(scratchDir, x.pkg+".tar")
		if out, err := osexec.Command(ephemeraBin, "build", "image", "--from-binary", bin, "--tag", x.tag, "-o", x.archive).CombinedOutput(); err != nil {
			x.err = fmt.Errorf("build image %s: %w\n%s", x.tag, err, out)
		}
	})
	if x.err != nil {
		t.Fatal(x.err)
	}
	return x.archive
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// Clusters outlive the CLI that created them; their supervisors are
	// re-parented to the nearest subreaper. Be that subreaper, and reap them,
	// so tests leave no zombie behind even where PID 1 does not reap.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "set child subreaper: %v\n", err)
		return 1
	}
	stop := startReaper()
	defer stop()
	// Clusters forward external names to the host's resolvers unless
	// told otherwise: tests talk only to loopback and their own test
	// hosts, so the default upstream is a loopback port nothing serves.
	if os.Getenv(local.DNSUpstreamEnv) == "" {
		os.Setenv(local.DNSUpstreamEnv, "127.0.0.1:9")
	}

	var err error
	if scratchDir, err = os.MkdirTemp("", "ephemera-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(scratchDir)
	ephemeraBin = os.Getenv("EPHEMERA_BIN")
	if ephemeraBin == "" {
		ephemeraBin = filepath.Join(scratchDir, "ephemera")
		build := osexec.Command("go", "build", "-o", ephemeraBin, "../../cmd/ephemera")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build ephemera: %v\n%s", err, out)
			return 1
		}
	}
	if err := installed(newVersion); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// installed checks that a Kubernetes version is installed.
func installed(version string) error {
	out, err := osexec.Command(ephemeraBin, "kube", "path", "--version", version).CombinedOutput()
	if err != nil {
		return fmt.Errorf("e2e tests need Kubernetes %s installed: run hack/setup.sh %s %s\n%s", version, newVersion, oldVersion, out)
	}
	return nil
}

// tracked holds the pids of children this test process waits for itself;
// the reaper leaves those alone. trackMu is held while starting one and
// while reaping, so a child cannot exit and be reaped before it is tracked.
var (
	trackMu sync.Mutex
	tracked = map[int]bool{}
)

// startTracked starts cmd so that the reaper never steals its exit status.
func startTracked(cmd *osexec.Cmd) error {
	trackMu.Lock()
	defer trackMu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	tracked[cmd.Process.Pid] = true
	return nil
}

// runTracked runs cmd to completion through startTracked.
func runTracked(cmd *osexec.Cmd) error {
	if err := startTracked(cmd); err != nil {
		return err
	}
	defer untrack(cmd.Process.Pid)
	return cmd.Wait()
}

func untrack(pid int) {
	trackMu.Lock()
	defer trackMu.Unlock()
	delete(tracked, pid)
}

// startReaper reaps exited children that nobody waits for: adopted
// supervisors and components.
func startReaper() func() {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			reapAdopted()
		}
	}()
	return func() { close(done); reapAdopted() }
}

func reapAdopted() {
	trackMu.Lock()
	defer trackMu.Unlock()
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || tracked[pid] {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 2 || fields[0] != "Z" || fields[1] != strconv.Itoa(self) {
			continue
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
}

// result is the outcome of one CLI run.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// cluster env: one state dir per test, cleaned and checked at the end.
type harness struct {
	t        testing.TB
	stateDir string
	// env is added to the environment of every CLI run.
	env []string
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, stateDir: t.TempDir()}
	before := snapshotHost()
	t.Cleanup(func() {
		r := h.run(context.Background(), "delete", "cluster", "--all")
		if r.err != nil {
			t.Errorf("cleanup: delete --all: %s", r)
		}
		h.stopRegistry()
		h.assertNothingLeft()
		h.assertHostClean(before)
	})
	return h
}

func (h *harness) command(ctx context.Context, args ...string) *osexec.Cmd {
	cmd := osexec.CommandContext(ctx, ephemeraBin, append([]string{"--state-dir", h.stateDir}, args...)...)
	cmd.Env = append(os.Environ(), "TERM=dumb", "EPHEMERA_REGISTRY_DIR="+h.registryDir())
	cmd.Env = append(cmd.Env, h.env...)
	return cmd
}

// registryDir is the test's own registry dir (the image cache and local
// registry, and the daemon serving them), under its state dir: every CLI
// run names it, so that no test uses or leaves behind the host's.
func (h *harness) registryDir() string {
	return filepath.Join(h.stateDir, "registry")
}

// stopRegistry stops the test's registry daemon, if the registry dir was
// ever made, and removes its data.
func (h *harness) stopRegistry() {
	h.t.Helper()
	if _, err := os.Stat(h.registryDir()); err != nil {
		return
	}
	if r := h.run(context.Background(), "registry", "stop", "--purge"); r.err != nil {
		h.t.Errorf("cleanup: registry stop --purge: %s", r)
	}
}

// run runs the CLI and returns its output; it never fails the test itself.
func (h *harness) run(ctx context.Context, args ...string) result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := h.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := runTracked(cmd)
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// must runs the CLI and fails the test when it fails.
func (h *harness) must(args ...string) result {
	h.t.Helper()
	r := h.run(context.Background(), args...)
	if r.err != nil {
		h.t.Fatalf("ephemera %s: %s", strings.Join(args, " "), r)
	}
	return r
}

func (h *harness) clusterDir(name string) string {
	return filepath.Join(h.stateDir, "clusters", name)
}

// processesUnder lists live processes whose command line mentions dir.
func processesUnder(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		if pid, _ := strconv.Atoi(e.Name()); isZombie(pid) {
			continue
		}
		out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return out
}

// assertNothingLeft checks that no process runs from the state dir and no
// cluster dir remains. The test's registry daemon, under the state dir too,
// outlives clusters by design: the cleanup stops it, and the host census
// reports one left running.
func (h *harness) assertNothingLeft() {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs := slices.DeleteFunc(processesUnder(h.stateDir), func(p string) bool {
			return strings.Contains(p, " --registry-dir "+h.registryDir())
		})
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			h.t.Errorf("processes left behind:\n%s", strings.Join(procs, "\n"))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	entries, _ := os.ReadDir(filepath.Join(h.stateDir, "clusters"))
	for _, e := range entries {
		h.t.Errorf("cluster dir left behind: %s", e.Name())
	}
}

// with returns the harness for a subtest: failures go to t.
func (h *harness) with(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}
