package image_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/internal/exec"
	"github.com/ephemera-dev/ephemera/internal/image"
)

var (
	pauseOnce sync.Once
	pauseBin  string
	pauseErr  error
	pauseDir  string
)

// buildPause builds the pause program from the embedded source, once per
// test binary, for GOARCH arch.
func buildPause(t *testing.T, arch string) string {
	t.Helper()
	if arch != "amd64" {
		return buildPauseArch(t, t.TempDir(), arch)
	}
	pauseOnce.Do(func() {
		pauseDir, pauseErr = os.MkdirTemp("", "ephemera-pause-test-")
		if pauseErr == nil {
			pauseBin, pauseErr = tryBuildPause(pauseDir, arch)
		}
	})
	if pauseErr != nil {
		t.Fatalf("build pause: %v", pauseErr)
	}
	return pauseBin
}

func buildPauseArch(t *testing.T, dir, arch string) string {
	t.Helper()
	bin, err := tryBuildPause(dir, arch)
	if err != nil {
		t.Fatalf("build pause for %s: %v", arch, err)
	}
	return bin
}

func tryBuildPause(dir, arch string) (string, error) {
	src := filepath.Join(dir, "src")
	if err := image.WritePauseModule(src); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "pause")
	cmd := exec.Command(context.Background(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
	return bin, cmd.Run()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pauseDir != "" {
		os.RemoveAll(pauseDir)
	}
	os.Exit(code)
}

// procStatus returns the fields of /proc/PID/status.
func procStatus(pid int) (map[string]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		out[k] = strings.TrimSpace(v)
	}
	return out, sc.Err()
}

// waitCatching waits until process pid has a handler for sig, so that a
// signal sent afterwards reaches pause's code rather than the default action.
func waitCatching(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := procStatus(pid)
		if err != nil {
			t.Fatal(err)
		}
		mask, _ := strconv.ParseUint(st["SigCgt"], 16, 64)
		if mask&(1<<(uint(sig)-1)) != 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pause (pid %d) never caught %v", pid, sig)
}

func waitExit(t *testing.T, cmd *osexec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("pause did not exit within 10s")
		return nil
	}
}

func TestPauseExitsZeroOnSignal(t *testing.T) {
	bin := buildPause(t, "amd64")
	if err := image.CheckStaticBinary(bin); err != nil {
		t.Errorf("pause is not a static amd64 program: %v", err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := osexec.Command(bin)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitCatching(t, cmd.Process.Pid, sig)
			// It keeps running until told to stop.
			time.Sleep(100 * time.Millisecond)
			if cmd.ProcessState != nil {
				t.Fatal("pause exited by itself")
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := waitExit(t, cmd); err != nil {
				t.Errorf("pause after %v: %v, want exit status 0", sig, err)
			}
		})
	}
}

// TestPauseReapsOrphans runs pause as PID 1 of a new PID namespace, the way
// a pod's sandbox runs, starts a process in that namespace whose parent
// exits at once, and checks that pause adopts and then reaps it.
func TestPauseReapsOrphans(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	nsenter, err := osexec.LookPath("nsenter")
	if err != nil {
		t.Skip("needs nsenter")
	}
	bin := buildPause(t, "amd64")
	cmd := osexec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	waitCatching(t, pid, syscall.SIGTERM)

	// sh exits at once; its child sleep becomes an orphan of the namespace.
	out, err := osexec.Command(nsenter, "--target", strconv.Itoa(pid), "--pid", "--", "/bin/sh", "-c", "sleep 1 </dev/null >/dev/null 2>&1 & exit 0").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v\n%s", err, out)
	}
	orphan := 0
	for _, c := range childrenOf(t, pid) {
		if c.comm == "sleep" {
			orphan = c.pid
		}
	}
	if orphan == 0 {
		t.Fatalf("the orphaned sleep was not adopted by pause (children: %+v)", childrenOf(t, pid))
	}
	// After sleep ends, pause must wait for it: no zombie stays behind.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := procStatus(orphan)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d still there 10s later, state %q: pause did not reap it", orphan, st["State"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd); err != nil {
		t.Errorf("pause as PID 1 after SIGTERM: %v, want exit status 0", err)
	}
}

type proc struct {
	pid  int
	comm string
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []proc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []proc
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procStatus(p)
		if err != nil {
			continue
		}
		if st["PPid"] == strconv.Itoa(pid) {
			out = append(out, proc{p, st["Name"]})
		}
	}
	return out
}

func TestCheckStaticBinary(t *testing.T) {
	static := buildPause(t, "amd64")
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	b, err := os.ReadFile(static)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notExec, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dynamic, err := osexec.LookPath("ls")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr string
		wantIs  error
	}{
		{name: "static", path: static},
		{name: "dynamic", path: dynamic, wantErr: "CGO_ENABLED=0", wantIs: image.ErrNotStatic},
		{name: "arm64", path: buildPause(t, "arm64"), wantErr: "GOARCH=amd64"},
		{name: "script", path: writeFile(t, dir, "script.sh", "#!/bin/sh\necho hi\n", 0o755), wantErr: "not a Linux program (ELF)"},
		{name: "not executable", path: notExec, wantErr: "chmod +x"},
		{name: "directory", path: dir, wantErr: "not a regular file"},
		{name: "missing", path: filepath.Join(dir, "nope"), wantIs: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := image.CheckStaticBinary(tt.path)
			if tt.wantErr == "" && tt.wantIs == nil {
				if err != nil {
					t.Errorf("CheckStaticBinary = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckStaticBinary = nil, want error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}
