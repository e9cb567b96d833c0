package local

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
)

func readOr(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func TestRotatingLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	// What a supervisor that ran before wrote counts.
	if err := os.WriteFile(path, []byte("0123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := openRotatingLog(path, 32)
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if n, err := l.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	check := func(current, previous string) {
		t.Helper()
		if got := readOr(t, path); got != current {
			t.Errorf("%s = %q, want %q", path, got, current)
		}
		if got := readOr(t, path+".1"); got != previous {
			t.Errorf("%s.1 = %q, want %q", path, got, previous)
		}
	}

	write("abcdefghij\n")
	write("klmnopqrs\n") // 31 bytes: still fits
	check("0123456789\nabcdefghij\nklmnopqrs\n", "")
	write("t\n") // 33: rotates first
	check("t\n", "0123456789\nabcdefghij\nklmnopqrs\n")
	big := strings.Repeat("x", 40) + "\n"
	write(big) // larger than the limit: whole, in a new file
	check(big, "t\n")
	write("y\n") // only one previous file is kept
	check("y\n", big)

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("late")); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestRunOnceRotatesOutput runs a real process that writes about 450 KiB to
// stdout and stderr through the supervisor: its log is rotated at the
// limit, one previous file is kept, and the current file ends with the
// last line the process wrote.
func TestRunOnceRotatesOutput(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, logsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	s := &supervisor{dir: dir, spawn: make(chan spawnRequest), status: supervisorStatus{Components: map[string]componentStatus{}}}
	go s.spawner()
	defer close(s.spawn)
	path := filepath.Join(dir, logsDir, "talker.log")
	// Above the 32 KiB chunks the output is copied in.
	const limit = 64 << 10
	l, err := openRotatingLog(path, limit)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	script := `i=0; while [ $i -lt 4000 ]; do echo "line $i of stdout, padded to about one hundred bytes ....................."; echo "line $i of stderr" >&2; i=$((i+1)); done; echo last line`
	c := component{Name: "talker", Args: []string{"/bin/sh", "-c", script}}
	if err := s.runOnce(context.Background(), c, 0, l); err != nil {
		t.Fatalf("runOnce: %v", err)
	}
	current, previous := readOr(t, path), readOr(t, path+".1")
	for name, content := range map[string]string{path: current, path + ".1": previous} {
		if len(content) == 0 || len(content) > limit {
			t.Errorf("%s holds %d bytes, want 1 to %d", name, len(content), limit)
		}
	}
	if !strings.HasSuffix(current, "last line\n") {
		t.Errorf("current log does not end with the last line: ...%q", current[max(0, len(current)-200):])
	}
	if !strings.Contains(previous+current, "line 3999 of stderr") {
		t.Error("stderr is not in the log")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, logsDir))
	if len(entries) != 2 {
		t.Errorf("logs dir holds %v, want the log and one previous", entries)
	}
	if bytes.Count([]byte(previous+current), []byte("=== ephemera: starting talker")) > 1 {
		t.Error("start header repeated")
	}
}

// TestRunOnceDoesNotWaitForChildrenHoldingOutput: a component whose child
// outlives it with the output pipe open still counts as exited, after
// logWaitDelay, so that the supervisor restarts it.
func TestRunOnceDoesNotWaitForChildrenHoldingOutput(t *testing.T) {
	dir := t.TempDir()
	s := &supervisor{dir: dir, spawn: make(chan spawnRequest), status: supervisorStatus{Components: map[string]componentStatus{}}}
	go s.spawner()
	defer close(s.spawn)
	l, err := openRotatingLog(filepath.Join(dir, "parent.log"), maxLogSize)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	c := component{Name: "parent", Args: []string{"/bin/sh", "-c", "sleep 5 & echo started"}}
	_ = s.runOnce(context.Background(), c, 0, l)
	if d := time.Since(start); d > logWaitDelay+2*time.Second {
		t.Errorf("runOnce returned after %s, want about %s", d, logWaitDelay)
	}
	if got := readOr(t, filepath.Join(dir, "parent.log")); !strings.Contains(got, "started") {
		t.Errorf("log = %q, want the output", got)
	}
}
