package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one live process of a cluster.
type process struct {
	pid  int
	comm string
}

// processesUnder lists live processes with an argument naming dir or a path
// below it. Every tool's cluster processes name their cluster's dir (data
// dir, kubeconfig, certificates), which is how they are found without
// trusting a tool's own bookkeeping.
func processesUnder(dir string) []process {
	dir = filepath.Clean(dir)
	var out []process
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !mentions(b, dir) {
			continue
		}
		out = append(out, process{pid: pid, comm: command(b)})
	}
	return out
}

// command is the program's name: the base of argv[0] (the kernel's comm
// cuts names at 15 bytes: "kube-controller").
func command(cmdline []byte) string {
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return filepath.Base(string(argv0))
}

// mentions reports whether a NUL-separated command line has an argument
// that is dir, ends in "="+dir, or contains dir+"/".
func mentions(cmdline []byte, dir string) bool {
	for _, arg := range bytes.Split(cmdline, []byte{0}) {
		a := string(arg)
		if a == dir || strings.HasSuffix(a, "="+dir) || strings.Contains(a, dir+"/") {
			return true
		}
	}
	return false
}

// rssMiB sums VmRSS over the processes, in MiB, and per command name.
func rssMiB(procs []process) (float64, map[string]float64) {
	total, by := 0.0, map[string]float64{}
	for _, p := range procs {
		kb, ok := statusField(p.pid, "VmRSS")
		if !ok {
			continue
		}
		total += kb / 1024
		by[p.comm] += kb / 1024
	}
	return total, by
}

// statusField reads a "kB" field of /proc/PID/status.
func statusField(pid int, field string) (float64, bool) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return kbField(f, field)
}

// memAvailableMiB is the kernel's estimate of memory available for new
// work (MemAvailable), in MiB.
func memAvailableMiB() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	kb, _ := kbField(f, "MemAvailable")
	return kb / 1024
}

func kbField(f *os.File, field string) (float64, bool) {
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, rest, ok := strings.Cut(s.Text(), ":")
		if !ok || name != field {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) == 0 {
			return 0, false
		}
		v, err := strconv.ParseFloat(fs[0], 64)
		return v, err == nil
	}
	return 0, false
}

// waitGone waits until no process mentions dir.
func waitGone(ctx context.Context, dir string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		procs := processesUnder(dir)
		if len(procs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes still running under %s: %s", dir, describe(procs))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// killUnder SIGKILLs every process that mentions dir: the last resort of
// cleanup, for processes this run started whose tool failed to stop them.
func killUnder(dir string) []process {
	procs := processesUnder(dir)
	for _, p := range procs {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	return procs
}

func describe(procs []process) string {
	var s []string
	for _, p := range procs {
		s = append(s, fmt.Sprintf("%d %s", p.pid, p.comm))
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds sums the CPU time (user and system) the processes used so far.
func cpuSeconds(procs []process) float64 {
	total := 0.0
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.pid), "stat"))
		if err != nil {
			continue
		}
		total += statCPU(string(b))
	}
	return total
}

// statCPU reads utime + stime (seconds) from a /proc/PID/stat line. The
// command name in parentheses may hold spaces, so fields count from the
// last ')'.
func statCPU(stat string) float64 {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (utime + stime) / clockTicks
}
