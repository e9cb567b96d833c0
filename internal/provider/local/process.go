package local

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processesOf returns the live processes that belong to the cluster in dir:
// those whose command line names a path inside dir (every component's flags
// and the supervisor's argv do) and that run in the supervisor's session.
// The session check spares a user's `tail -f <dir>/logs/...`; it applies
// whenever the supervisor's pid was recorded, and the supervisor is never
// started before it is. This finds components even when the supervisor is
// gone.
func processesOf(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	session := -1
	if b, err := os.ReadFile(filepath.Join(dir, supervisorPIDFile)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			session = pid
		}
	}
	self := os.Getpid()
	prefix := []byte(dir + string(os.PathSeparator))
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		for _, arg := range bytes.Split(cmdline, []byte{0}) {
			if bytes.Equal(arg, []byte(dir)) || bytes.Contains(arg, prefix) {
				st, ok := readStat(pid)
				if ok && (session < 0 || st.session == session) && !exited(pid, st) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

// procStat is what processesOf needs from /proc/<pid>/stat.
type procStat struct {
	state   byte
	session int
}

// readStat parses /proc/<pid>/stat; ok is false when the process is gone.
func readStat(pid int) (st procStat, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, false
	}
	// The fields follow the command name, which is in parentheses and may
	// hold spaces: state ppid pgrp session ...
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 || len(f[0]) != 1 {
		return st, false
	}
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		return st, false
	}
	return procStat{state: f[0][0], session: sid}, true
}

// isZombie reports whether pid has exited (or is gone) and released its
// resources. A killed multi-threaded process shows its leader as a zombie
// while other threads still run their exit, holding the shared file table
// and so its sockets: it counts as exited only once the leader is alone.
func isZombie(pid int) bool {
	st, ok := readStat(pid)
	return !ok || exited(pid, st)
}

// exited reports whether a process in state st has exited and released its
// resources (see isZombie).
func exited(pid int, st procStat) bool {
	if st.state != 'Z' && st.state != 'X' {
		return false
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err != nil || len(tasks) <= 1
}

// killAll sends SIGKILL to every process of the cluster, repeating until
// none is left (a supervisor may start a child between scans) or ctx ends.
func killAll(ctx context.Context, dir string) error {
	for {
		pids := processesOf(dir)
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes %v of %s did not exit: %w", pids, dir, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
