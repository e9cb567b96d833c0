package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ephemera-dev/ephemera/internal/exec"
	"github.com/ephemera-dev/ephemera/internal/flock"
)

// Timeouts of Ensure and Stop.
const (
	StartTimeout = 10 * time.Second
	StopTimeout  = 10 * time.Second
)

// ServeCommand is the argv after the executable that runs the daemon in the
// foreground: `ephemera registry serve --registry-dir DIR`.
var ServeCommand = []string{"registry", "serve"}

// Daemon is a running registry daemon, as its daemon.json describes it.
type Daemon struct {
	// Dir is its registry dir.
	Dir string `json:"-"`
	// PID is its process id.
	PID int `json:"pid"`
	// Addr is its loopback listener, for the host.
	Addr netip.AddrPort `json:"addr"`
	// ClusterAddr is its loopback listener for clusters (their
	// supervisors splice their links there): read-only, see
	// Router.ForClusters. Daemons from before it have none.
	ClusterAddr netip.AddrPort `json:"clusterAddr,omitzero"`
	// Started is when it started listening.
	Started time.Time `json:"started"`
}

// URL returns http://ADDR, the daemon's base URL.
func (d Daemon) URL() string { return "http://" + d.Addr.String() }

// LocalHost returns localhost:PORT, the local registry's name on the host
// and in every cluster.
func (d Daemon) LocalHost() string { return fmt.Sprintf("localhost:%d", d.Addr.Port()) }

// Running reports the daemon of dir: running when it holds R/daemon.lock and
// has written R/daemon.json (a daemon still starting is not running yet; a
// daemon.json left by a killed daemon is ignored).
func Running(dir string) (Daemon, bool, error) {
	if !flock.Held(filepath.Join(dir, daemonLock)) {
		return Daemon{}, false, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, daemonFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Daemon{}, false, nil
	}
	if err != nil {
		return Daemon{}, false, fmt.Errorf("registry daemon: %w", err)
	}
	var d Daemon
	if err := json.Unmarshal(b, &d); err != nil {
		return Daemon{}, false, fmt.Errorf("registry daemon: %s: %w", filepath.Join(dir, daemonFile), err)
	}
	// The daemon removes a stale file before it writes its own, so a file
	// seen while the lock is held is the holder's, unless it is being
	// replaced right now: a dead pid says so.
	if d.PID <= 0 || syscall.Kill(d.PID, 0) == syscall.ESRCH {
		return Daemon{}, false, nil
	}
	d.Dir = dir
	return d, true, nil
}

// Ensure returns dir's daemon, starting `exe registry serve --registry-dir
// dir` detached when none runs: in its own session, stdin /dev/null,
// output appended to R/daemon.log, cwd /. Starts are serialised by
// R/start.lock. It returns once the daemon answers GET /v2/, or fails after
// StartTimeout with the end of R/daemon.log.
func Ensure(ctx context.Context, dir, exe string) (Daemon, error) {
	if d, ok, err := Running(dir); ok || err != nil {
		return d, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Daemon{}, fmt.Errorf("start registry daemon: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	lock, err := flock.Acquire(ctx, filepath.Join(dir, startLock))
	if err != nil {
		return Daemon{}, fmt.Errorf("start registry daemon: %w", err)
	}
	defer lock.Unlock()
	// Another process may have started it while we waited.
	if d, ok, err := Running(dir); ok || err != nil {
		if err == nil {
			err = waitReady(ctx, d)
		}
		return d, err
	}
	logPath := filepath.Join(dir, logFile)
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Daemon{}, fmt.Errorf("start registry daemon: %w", err)
	}
	defer log.Close()
	argv := append(append([]string{}, ServeCommand...), "--registry-dir", dir)
	cmd := osexec.Command(exe, argv...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Daemon{}, fmt.Errorf("start registry daemon: %w", err)
	}
	exited := make(chan error, 1)
	// Reap it if it exits while we live; otherwise init adopts it.
	go func() { exited <- cmd.Wait() }()
	for {
		d, ok, err := Running(dir)
		if err != nil {
			return Daemon{}, err
		}
		if ok && ping(ctx, d) == nil {
			return d, nil
		}
		select {
		case err := <-exited:
			return Daemon{}, fmt.Errorf("registry daemon exited at start (%w); the end of %s:\n%s", err, logPath, tailOf(logPath))
		case <-ctx.Done():
			return Daemon{}, fmt.Errorf("registry daemon did not answer within %s; the end of %s:\n%s", StartTimeout, logPath, tailOf(logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitReady polls the daemon until it answers or ctx ends.
func waitReady(ctx context.Context, d Daemon) error {
	for {
		err := ping(ctx, d)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("registry daemon at %s does not answer: %w", d.Addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ping asks GET /v2/.
func ping(ctx context.Context, d Daemon) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := daemonClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v2/: %s", resp.Status)
	}
	return nil
}

// daemonTransport reaches the daemon on loopback, never through a proxy.
var daemonTransport = &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	MaxIdleConnsPerHost: 16,
	IdleConnTimeout:     30 * time.Second,
}

var daemonClient = &http.Client{Transport: daemonTransport}

// Stop stops dir's daemon: SIGTERM, then SIGKILL if it has not exited within
// StopTimeout. No daemon running is no error.
func Stop(ctx context.Context, dir string) error {
	lockPath := filepath.Join(dir, daemonLock)
	d, ok, err := Running(dir)
	if err != nil {
		return err
	}
	if !ok {
		if !flock.Held(lockPath) {
			return nil
		}
		// Starting: wait for it to say who it is.
		d, err = waitRunning(ctx, dir)
		if err != nil || d.PID == 0 {
			return err
		}
	}
	if err := syscall.Kill(d.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop registry daemon (pid %d): %w", d.PID, err)
	}
	if waitUnlocked(ctx, lockPath, StopTimeout) {
		return nil
	}
	if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill registry daemon (pid %d): %w", d.PID, err)
	}
	if waitUnlocked(ctx, lockPath, 5*time.Second) {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("stop registry daemon: %w", ctx.Err())
	}
	return fmt.Errorf("registry daemon (pid %d) still holds %s after SIGKILL", d.PID, lockPath)
}

// waitRunning waits up to StartTimeout for a starting daemon's daemon.json;
// a zero Daemon means it went away.
func waitRunning(ctx context.Context, dir string) (Daemon, error) {
	deadline := time.Now().Add(StartTimeout)
	for {
		d, ok, err := Running(dir)
		if ok || err != nil {
			return d, err
		}
		if !flock.Held(filepath.Join(dir, daemonLock)) {
			return Daemon{}, nil
		}
		if time.Now().After(deadline) {
			return Daemon{}, fmt.Errorf("registry daemon holds %s but wrote no %s within %s", filepath.Join(dir, daemonLock), daemonFile, StartTimeout)
		}
		select {
		case <-ctx.Done():
			return Daemon{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitUnlocked waits until nobody holds path, for at most d.
func waitUnlocked(ctx context.Context, path string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for flock.Held(path) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// tailOf returns the end of a log file, for errors.
func tailOf(path string) string {
	b, _ := os.ReadFile(path)
	return exec.Tail(strings.TrimSpace(string(b)), 2048)
}
