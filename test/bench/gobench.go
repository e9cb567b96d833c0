package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ephemera-dev/ephemera/internal/exec"
)

// goBench is one result line of `go test -bench`.
type goBench struct {
	// Name is the benchmark's name without the -GOMAXPROCS suffix.
	Name string
	// N is the number of iterations.
	N int
	// Metrics are the reported values by unit ("ns/op", "claim-p50-ms").
	Metrics map[string]float64
}

// parseGoBench reads the result lines of `go test -bench` output run with
// -cpu procs.
func parseGoBench(out string, procs int) []goBench {
	var res []goBench
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		name := f[0]
		if procs != 1 {
			name = strings.TrimSuffix(name, "-"+strconv.Itoa(procs))
		}
		b := goBench{Name: name, N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			b.Metrics[f[i+1]] = v
		}
		res = append(res, b)
	}
	return res
}

// findGoBench returns the result called name.
func findGoBench(res []goBench, name string) (goBench, bool) {
	for _, b := range res {
		if b.Name == name {
			return b, true
		}
	}
	return goBench{}, false
}

// e2eBench runs the existing benchmarks of test/e2e with the ephemera
// binary of this run.
type e2eBench struct {
	repo     string
	ephemera string
	// tmp is the benchmarks' TMPDIR: their state dirs land there, so that
	// cleanup finds whatever an interrupted benchmark left.
	tmp string
	log io.Writer
}

// command is the documented form of a run.
func (e *e2eBench) command(pattern string, iters int) string {
	return fmt.Sprintf("EPHEMERA_BIN=bin/ephemera go test -run '^$' -bench '%s' -benchtime %dx ./test/e2e/", pattern, iters)
}

// run runs the benchmarks matching pattern for iters iterations each.
func (e *e2eBench) run(ctx context.Context, pattern string, iters int, timeout time.Duration) ([]goBench, error) {
	procs := runtime.NumCPU()
	if err := os.MkdirAll(e.tmp, 0o755); err != nil {
		return nil, err
	}
	defer e.cleanup()
	ctx, cancel := context.WithTimeout(ctx, timeout+time.Minute)
	defer cancel()
	cmd := exec.Command(ctx, "go", "test", "-count", "1", "-run", "^$", "-bench", pattern,
		"-benchtime", strconv.Itoa(iters)+"x", "-cpu", strconv.Itoa(procs), "-timeout", timeout.String(), "./test/e2e/")
	cmd.Dir = e.repo
	cmd.Env = append(os.Environ(), "EPHEMERA_BIN="+e.ephemera, "TMPDIR="+e.tmp)
	cmd.Stream = func(line string) {
		if strings.TrimSpace(line) != "" {
			fmt.Fprintf(e.log, "     %s\n", line)
		}
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	return parseGoBench(string(out), procs), nil
}

// cleanup deletes the clusters of every state dir an interrupted benchmark
// left in its TMPDIR, kills what still runs there, and removes it all.
func (e *e2eBench) cleanup() {
	entries, _ := os.ReadDir(e.tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, ent := range entries {
		dir := filepath.Join(e.tmp, ent.Name())
		if _, err := os.Stat(filepath.Join(dir, "clusters")); err == nil {
			_ = exec.Command(ctx, e.ephemera, "--state-dir", dir, "delete", "cluster", "--all").Run()
		}
	}
	if procs := killUnder(e.tmp); len(procs) > 0 {
		fmt.Fprintf(e.log, "   killed processes a benchmark left: %s\n", describe(procs))
		_ = waitGone(ctx, e.tmp, 30*time.Second)
	}
	for _, ent := range entries {
		_ = os.RemoveAll(filepath.Join(e.tmp, ent.Name()))
	}
}
