package local

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestProcessesOf(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "clusters", "a")
	tests := []struct {
		name  string
		arg   string
		match bool
	}{
		{"path inside dir", filepath.Join(dir, "marker"), true},
		{"flag naming a file inside dir", "--data-dir=" + filepath.Join(dir, "etcd"), true},
		{"dir itself, like the supervisor's argv", dir, true},
		{"sibling dir with the same prefix", filepath.Join(base, "clusters", "ab", "marker"), false},
		{"dir with a suffix", dir + "-old", false},
		{"parent dir", filepath.Join(base, "clusters"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := startSleeper(t, tt.arg)
			pid := cmd.Process.Pid
			if got := slices.Contains(processesOf(dir), pid); got != tt.match {
				t.Fatalf("processesOf(%s) lists pid %d with argument %q: %v, want %v", dir, pid, tt.arg, got, tt.match)
			}
			if slices.Contains(processesOf(filepath.Join(base, "clusters", "other")), pid) {
				t.Fatalf("processesOf of another cluster lists pid %d", pid)
			}
		})
	}

	t.Run("never the caller", func(t *testing.T) {
		// This process's cmdline does not name dir, but processesOf must
		// skip it anyway; check with a dir it does name.
		if slices.Contains(processesOf(filepath.Dir(os.Args[0])), os.Getpid()) {
			t.Fatal("processesOf lists the calling process")
		}
	})
}

func TestKillAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "clusters", "a")
	other := startSleeper(t, filepath.Join(t.TempDir(), "clusters", "b", "marker"))
	cmds := []*osexec.Cmd{
		startSleeper(t, filepath.Join(dir, "marker")),
		startSleeper(t, dir),
	}
	for _, cmd := range cmds {
		if !slices.Contains(processesOf(dir), cmd.Process.Pid) {
			t.Fatalf("processesOf does not find pid %d", cmd.Process.Pid)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := killAll(ctx, dir); err != nil {
		t.Fatalf("killAll: %v", err)
	}
	// The children are zombies until reaped; they no longer count.
	if pids := processesOf(dir); len(pids) != 0 {
		t.Errorf("processesOf after killAll = %v, want none", pids)
	}
	for _, cmd := range cmds {
		err := cmd.Wait()
		var ee *osexec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("pid %d: Wait = %v, want killed by SIGKILL", cmd.Process.Pid, err)
		}
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("killAll killed a process of another cluster: %v", err)
	}
	if err := killAll(ctx, dir); err != nil {
		t.Errorf("killAll with nothing left = %v, want nil", err)
	}
}

func TestIsZombie(t *testing.T) {
	cmd := startSleeper(t, "zombie-test")
	pid := cmd.Process.Pid
	if isZombie(pid) {
		t.Fatal("isZombie = true for a sleeping process")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not reaped yet: it turns into a zombie.
	deadline := time.Now().Add(2 * time.Second)
	for !isZombie(pid) {
		if time.Now().After(deadline) {
			t.Fatal("isZombie = false for a killed, unreaped process")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Wait()
	if !isZombie(pid) {
		t.Error("isZombie = false for a reaped (gone) process")
	}
}

func TestDeleteKillsProcesses(t *testing.T) {
	p := newTestProvider(t)
	dir := makeClusterDir(t, p, "running")
	cmd := startSleeper(t, "--log-file="+filepath.Join(dir, logsDir, "etcd.log"))
	if err := p.Delete(context.Background(), "running"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		var ee *osexec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("Wait = %v, want the cluster's process killed by SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Delete left the cluster's process running")
		_ = cmd.Process.Kill()
		t.Logf("killed by the test: %v", <-waited)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster dir still there: %v", err)
	}
}
