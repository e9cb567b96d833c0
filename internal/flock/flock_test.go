package flock_test

import (
	"bufio"
	"context"
	"errors"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/internal/flock"
)

// holdEnv, when set in the environment, turns the test binary into a helper
// process that takes the lock on the path it names, reports "locked" on
// stdout and sleeps until it is killed (or, as a safety net, for a minute).
const holdEnv = "EPHEMERA_FLOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		l, err := flock.TryLock(path)
		if err != nil {
			os.Stderr.WriteString("helper: " + err.Error() + "\n")
			os.Exit(2)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Minute)
		l.Unlock()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustLock(t *testing.T, path string) *flock.Lock {
	t.Helper()
	l, err := flock.TryLock(path)
	if err != nil {
		t.Fatalf("TryLock(%s): %v", path, err)
	}
	t.Cleanup(l.Unlock)
	return l
}

func TestTryLock(t *testing.T) {
	t.Run("creates the file and excludes a second holder", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.lock")
		l := mustLock(t, path)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("lock file not created: %v", err)
		}
		// A second open file description conflicts even in this process.
		l2, err := flock.TryLock(path)
		if !errors.Is(err, flock.ErrLocked) {
			l2.Unlock()
			t.Fatalf("second TryLock: err = %v, want ErrLocked", err)
		}
		if l2 != nil {
			t.Fatalf("second TryLock returned a lock with ErrLocked")
		}
		l.Unlock()
		l3, err := flock.TryLock(path)
		if err != nil {
			t.Fatalf("TryLock after Unlock: %v", err)
		}
		l3.Unlock()
	})

	t.Run("missing dir is an error, not ErrLocked", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no-such-dir", "x.lock")
		l, err := flock.TryLock(path)
		if err == nil {
			l.Unlock()
			t.Fatal("TryLock in a missing dir succeeded")
		}
		if errors.Is(err, flock.ErrLocked) {
			t.Fatalf("err = %v, must not be ErrLocked", err)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want it to wrap fs.ErrNotExist", err)
		}
	})
}

func TestUnlock(t *testing.T) {
	tests := []struct {
		name string
		lock func(t *testing.T) *flock.Lock
	}{
		{"nil lock", func(*testing.T) *flock.Lock { return nil }},
		{"zero lock", func(*testing.T) *flock.Lock { return &flock.Lock{} }},
		{"held lock twice", func(t *testing.T) *flock.Lock {
			return mustLock(t, filepath.Join(t.TempDir(), "x.lock"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.lock(t)
			l.Unlock()
			l.Unlock() // must neither panic nor misbehave
		})
	}
}

func TestHeld(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		want  bool
	}{
		{"missing file", func(*testing.T, string) {}, false},
		{"unlocked file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"held", func(t *testing.T, path string) { mustLock(t, path) }, true},
		{"released", func(t *testing.T, path string) { mustLock(t, path).Unlock() }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.lock")
			tt.setup(t, path)
			_, statErr := os.Stat(path)
			if got := flock.Held(path); got != tt.want {
				t.Fatalf("Held = %v, want %v", got, tt.want)
			}
			// Held only looks: it creates no file and leaves no lock behind.
			if _, err := os.Stat(path); (err == nil) != (statErr == nil) {
				t.Fatalf("Held changed whether %s exists: before %v, after %v", path, statErr, err)
			}
			if !tt.want && statErr == nil {
				l, err := flock.TryLock(path)
				if err != nil {
					t.Fatalf("TryLock after Held: %v", err)
				}
				l.Unlock()
			}
		})
	}
}

func TestAcquireWaitsForRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	holder := mustLock(t, path)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	type result struct {
		l   *flock.Lock
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := flock.Acquire(ctx, path)
		done <- result{l, err}
	}()

	select {
	case r := <-done:
		r.l.Unlock()
		t.Fatalf("Acquire returned while the lock was held: %v", r.err)
	case <-time.After(150 * time.Millisecond):
	}

	holder.Unlock()
	r := <-done // bounded by ctx
	if r.err != nil {
		t.Fatalf("Acquire after release: %v", r.err)
	}
	defer r.l.Unlock()
	if !flock.Held(path) {
		t.Fatal("Held = false while Acquire's lock is held")
	}
	if l, err := flock.TryLock(path); !errors.Is(err, flock.ErrLocked) {
		l.Unlock()
		t.Fatalf("TryLock while Acquire's lock is held: err = %v, want ErrLocked", err)
	}
}

func TestAcquireContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"canceled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.lock")
			mustLock(t, path)
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			l, err := flock.Acquire(ctx, path)
			if err == nil {
				l.Unlock()
				t.Fatal("Acquire took a held lock")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want it to wrap %v", err, tt.want)
			}
			if l != nil {
				t.Fatal("Acquire returned a lock with an error")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Acquire returned %s after the context ended", d)
			}
		})
	}

	t.Run("other errors return at once", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, err := flock.Acquire(ctx, filepath.Join(t.TempDir(), "missing", "x.lock"))
		if err == nil {
			l.Unlock()
			t.Fatal("Acquire in a missing dir succeeded")
		}
		if !errors.Is(err, fs.ErrNotExist) || ctx.Err() != nil {
			t.Fatalf("err = %v (ctx %v), want fs.ErrNotExist before the deadline", err, ctx.Err())
		}
	})
}

// TestKernelReleasesLockOfKilledHolder runs the test binary as a helper that
// takes the lock, kills it with SIGKILL and expects the lock to be free.
func TestKernelReleasesLockOfKilledHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	cmd := osexec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+path)
	cmd.Stderr = os.Stderr
	// Should this test die, the kernel kills the helper too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})

	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v; want \"locked\"", line, err)
	}
	if !flock.Held(path) {
		t.Fatal("Held = false while the helper holds the lock")
	}
	if l, err := flock.TryLock(path); !errors.Is(err, flock.ErrLocked) {
		l.Unlock()
		t.Fatalf("TryLock while the helper holds the lock: err = %v, want ErrLocked", err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitErr := cmd.Wait()
	exited = true
	var ee *osexec.ExitError
	if !errors.As(waitErr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper exit = %v, want killed by SIGKILL", waitErr)
	}
	waitFor(t, 2*time.Second, "the kernel to release the lock", func() bool { return !flock.Held(path) })
	l := mustLock(t, path)
	l.Unlock()
}
