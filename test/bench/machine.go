package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ephemera-dev/ephemera/internal/exec"
)

// machineFacts describes the machine and the versions of everything
// measured.
func machineFacts(ctx context.Context, repo, ephemeraBin, kwokctlBin string, kb kubeBinaries) []fact {
	memKiB, _ := func() (float64, bool) {
		f, err := os.Open("/proc/meminfo")
		if err != nil {
			return 0, false
		}
		defer f.Close()
		return kbField(f, "MemTotal")
	}()
	facts := []fact{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 MST")},
		{"CPU", fmt.Sprintf("%d cores, %s", runtime.NumCPU(), cpuModel())},
		{"memory", fmt.Sprintf("%.0f GiB", memKiB/1024/1024)},
		{"OS, kernel", osRelease() + ", kernel " + firstLine(readFile("/proc/sys/kernel/osrelease"))},
		{"load average at start (1, 5, 15 min)", loadAverage()},
		{"Go", runtime.Version()},
		{"ephemera", ephemeraVersion(ctx, repo)},
		{"Kubernetes", strings.TrimPrefix(output(ctx, kb.apiserver, "--version"), "Kubernetes ") + " (kube-apiserver, kube-controller-manager, kube-scheduler from `" + kb.dir + "`)"},
		{"etcd", strings.TrimPrefix(output(ctx, kb.etcd, "--version"), "etcd Version: ") + " (built by `ephemera kube install` from the Go module proxy)"},
		{"kwok (node simulator of ephemera and kwokctl)", output(ctx, kb.kwok, "--version")},
	}
	if kwokctlBin != "" {
		facts = append(facts, fact{"kwokctl", output(ctx, kwokctlBin, "--version") + " (`" + kwokctlBin + "`)"})
	}
	facts = append(facts, fact{"envtest", "controller-runtime " + moduleVersion("sigs.k8s.io/controller-runtime") + " pkg/envtest"})
	return facts
}

// output is the first line of a command's output, or why there is none.
func output(ctx context.Context, bin string, args ...string) string {
	cmd := exec.Command(ctx, bin, args...)
	out, err := cmd.Output()
	if err != nil {
		return "unknown (" + firstLine(err.Error()) + ")"
	}
	return firstLine(string(out))
}

// ephemeraVersion is the commit the run measured, "-dirty" when the tree
// has changes.
func ephemeraVersion(ctx context.Context, repo string) string {
	cmd := exec.Command(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return "commit " + strings.TrimSpace(string(out))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown model"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if name, value, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown model"
}

func osRelease() string {
	for _, line := range strings.Split(readFile("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

// loadAverage is the 1, 5 and 15 minute load averages.
func loadAverage() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

// load1 is the 1-minute load average.
func load1() float64 {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}
