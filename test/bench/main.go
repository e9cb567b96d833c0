package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ephemera-dev/ephemera/internal/kube"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the settings of one run. Counts left at zero take the
// mode's default (quick or not).
type options struct {
	ephemera    string
	repo        string
	doc         string
	command     string
	quick       bool
	budget      time.Duration
	kubeVersion string
	cacheDir    string
	skip        string

	rounds        int
	memRounds     int
	idle          time.Duration
	nodeRounds    int
	capacityBound int
	settle        time.Duration
	cpuWindow     time.Duration
	memReserve    float64
	claimIters1   int
	claimIters20  int
	realNodeIters int
	goTestTimeout time.Duration
}

// defaults fills what was left unset: small counts in quick mode.
func (o *options) defaults() {
	set := func(v *int, normal, quick int) {
		if *v == 0 {
			*v = normal
			if o.quick {
				*v = quick
			}
		}
	}
	setD := func(v *time.Duration, normal, quick time.Duration) {
		if *v == 0 {
			*v = normal
			if o.quick {
				*v = quick
			}
		}
	}
	set(&o.rounds, 7, 2)
	set(&o.memRounds, 3, 1)
	set(&o.nodeRounds, 5, 2)
	set(&o.capacityBound, 12, 3)
	set(&o.claimIters1, 10, 3)
	set(&o.claimIters20, 2, 1)
	set(&o.realNodeIters, 5, 1)
	setD(&o.idle, 15*time.Second, 5*time.Second)
	setD(&o.settle, 3*time.Second, 2*time.Second)
	setD(&o.cpuWindow, 10*time.Second, 3*time.Second)
	setD(&o.budget, 15*time.Minute, 8*time.Minute)
	setD(&o.goTestTimeout, 8*time.Minute, 5*time.Minute)
	if o.memReserve == 0 {
		o.memReserve = 2048
	}
}

// argv is the run's command line with every setting explicit.
func (o *options) argv() string {
	args := []string{"bin/ephemera-bench"}
	if o.quick {
		args = append(args, "--quick")
	}
	args = append(args,
		fmt.Sprintf("--rounds=%d", o.rounds), fmt.Sprintf("--mem-rounds=%d", o.memRounds), "--idle="+o.idle.String(),
		fmt.Sprintf("--node-rounds=%d", o.nodeRounds), fmt.Sprintf("--capacity-bound=%d", o.capacityBound),
		fmt.Sprintf("--claim-iters-1=%d", o.claimIters1), fmt.Sprintf("--claim-iters-20=%d", o.claimIters20),
		fmt.Sprintf("--real-node-iters=%d", o.realNodeIters))
	if o.kubeVersion != "" {
		args = append(args, "--kubernetes-version="+o.kubeVersion)
	}
	if o.skip != "" {
		args = append(args, "--skip="+o.skip)
	}
	return strings.Join(args, " ")
}

func (o *options) skips(scenario string) bool {
	for _, s := range strings.Split(o.skip, ",") {
		if strings.TrimSpace(s) == scenario {
			return true
		}
	}
	return false
}

// Scenarios that --skip takes.
var scenarios = []string{"compare", "capacity", "realnode", "server"}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("ephemera-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ephemera, "ephemera", "bin/ephemera", "the ephemera binary to measure")
	fs.StringVar(&o.repo, "repo", ".", "the ephemera repository (for test/e2e and the commit)")
	fs.StringVar(&o.doc, "doc", "", "rewrite the generated section of this Markdown file (docs/benchmarks.md)")
	fs.StringVar(&o.command, "command", "", "how the run was started, for the doc (default: this command line)")
	fs.BoolVar(&o.quick, "quick", os.Getenv("BENCH_QUICK") == "1", "few samples, for development (env BENCH_QUICK=1)")
	fs.DurationVar(&o.budget, "budget", 0, "soft limit of the whole run (default 15m, quick 8m)")
	fs.StringVar(&o.kubeVersion, "kubernetes-version", "", "Kubernetes version every tool runs (default: ephemera's default)")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "where ephemera caches its tools; kwokctl is built into <dir>/tools (default: ephemera's, env "+kube.CacheDirEnv+")")
	fs.StringVar(&o.skip, "skip", "", "comma-separated scenarios to leave out: "+strings.Join(scenarios, ", "))
	fs.IntVar(&o.rounds, "rounds", 0, "rounds of cold create and delete (default 7, quick 2)")
	fs.IntVar(&o.memRounds, "mem-rounds", 0, "rounds of idle RSS (default 3, quick 1)")
	fs.DurationVar(&o.idle, "idle", 0, "how long clusters idle before their RSS is read (default 15s, quick 5s)")
	fs.IntVar(&o.nodeRounds, "node-rounds", 0, "rounds of create → nodes Ready + Deployment Available (default 5, quick 2)")
	fs.IntVar(&o.capacityBound, "capacity-bound", 0, "most idle clusters per tool in the capacity run (default 12, quick 3)")
	fs.DurationVar(&o.settle, "settle", 0, "pause after each create of the capacity run (default 3s, quick 2s)")
	fs.DurationVar(&o.cpuWindow, "cpu-window", 0, "how long the CPU of the idle clusters is measured at the end of a capacity run (default 10s, quick 3s)")
	fs.Float64Var(&o.memReserve, "mem-reserve", 0, "MiB of MemAvailable the capacity run leaves free (default 2048)")
	fs.IntVar(&o.claimIters1, "claim-iters-1", 0, "iterations of single claims (default 10, quick 3)")
	fs.IntVar(&o.claimIters20, "claim-iters-20", 0, "iterations of 20 concurrent claims (default 2, quick 1)")
	fs.IntVar(&o.realNodeIters, "real-node-iters", 0, "iterations of create → first pod Running (default 5, quick 1)")
	fs.DurationVar(&o.goTestTimeout, "go-test-timeout", 0, "longest timeout of a go test benchmark run; each gets a share of the budget left (default 8m, quick 5m)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(o.skip, ",") {
		if s = strings.TrimSpace(s); s != "" && !contains(scenarios, s) {
			return o, fmt.Errorf("--skip: unknown scenario %q (want %s)", s, strings.Join(scenarios, ", "))
		}
	}
	o.defaults()
	return o, nil
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// run is the whole program: 0 when every measurement succeeded, 1 when one
// failed (never because a number was slow), 2 on bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "ERROR: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := measure(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "ERROR: %v\n", err)
		return 1
	}
	section := report(res)
	fmt.Fprintf(stdout, "\n%s", section)
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "ERROR: interrupted; the doc is left as it was")
		return 1
	}
	if o.doc != "" {
		if err := writeSection(o.doc, section); err != nil {
			fmt.Fprintf(stderr, "ERROR: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, " ✓ Wrote the generated section of %s\n", o.doc)
	}
	if len(res.Failures) > 0 {
		fmt.Fprintf(stderr, "ERROR: %d measurement(s) failed:\n", len(res.Failures))
		for _, f := range res.Failures {
			fmt.Fprintf(stderr, "  %s\n", f)
		}
		return 1
	}
	return 0
}

// measure prepares the tools, runs every scenario and cleans up after
// itself, whatever happened.
func measure(ctx context.Context, o options, log io.Writer) (*results, error) {
	// envtest logs through controller-runtime's logger; nobody reads it.
	ctrllog.SetLogger(logr.Discard())
	started := time.Now()
	var err error
	if o.ephemera, err = filepath.Abs(o.ephemera); err != nil {
		return nil, err
	}
	if o.repo, err = filepath.Abs(o.repo); err != nil {
		return nil, err
	}
	if o.cacheDir == "" {
		if o.cacheDir, err = kube.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	kb, err := resolveKube(ctx, o.ephemera, o.kubeVersion)
	if err != nil {
		return nil, fmt.Errorf("find the Kubernetes binaries (run hack/setup.sh): %w", err)
	}
	kwokctlBin := ""
	if !o.skips("compare") || !o.skips("capacity") {
		if kwokctlBin, err = ensureKwokctl(ctx, o.cacheDir, log); err != nil {
			return nil, err
		}
	}

	// Everything this run makes lives under one short root (short, because
	// real nodes put socket paths under the e2e benchmarks' TMPDIR).
	root, err := os.MkdirTemp("", "eb-")
	if err != nil {
		return nil, err
	}
	eph := &ephemeraDriver{bin: o.ephemera, stateDir: filepath.Join(root, "ephemera"), version: o.kubeVersion}
	kw := &kwokctlDriver{bin: kwokctlBin, workDir: filepath.Join(root, "kwok"), kube: kb}
	et := &envtestDriver{binDir: kb.dir, root: filepath.Join(root, "envtest")}
	for _, d := range []string{eph.stateDir, kw.workDir, et.root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	b := &bench{
		opts:    o,
		log:     log,
		drivers: []driver{eph, kw, et},
		broken:  map[string]string{},
		live:    map[*cluster]driver{},
		res: &results{
			Command: o.command,
			Argv:    o.argv(),
			Mode:    map[bool]string{true: "quick", false: "default"}[o.quick],
			Tools:   []string{eph.Name(), kw.Name(), et.Name()},
			Cores:   runtime.NumCPU(),
			How:     map[string]commands{eph.Name(): eph.Commands(), kw.Name(): kw.Commands(), et.Name(): et.Commands()},
		},
	}
	if b.res.Command == "" {
		b.res.Command = b.res.Argv
	}
	b.res.Facts = machineFacts(ctx, o.repo, o.ephemera, kwokctlBin, kb)
	e2e := &e2eBench{repo: o.repo, ephemera: o.ephemera, tmp: filepath.Join(root, "t"), log: log}
	defer func() {
		b.logf(" • Cleaning up")
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		b.cleanup(cctx)
		_ = eph.deleteAll(cctx)
		if kw.bin != "" {
			kw.deleteAll(cctx)
		}
		e2e.cleanup()
		if procs := killUnder(root); len(procs) > 0 {
			b.logf("   killed leftover processes: %s", describe(procs))
			_ = waitGone(cctx, root, 30*time.Second)
		}
		if err := os.RemoveAll(root); err != nil {
			b.logf("   cleanup: %v", err)
		}
	}()

	// The peers first, within the budget minus a reserve for the
	// ephemera-only scenarios, which run last, each bounded by a go test
	// timeout taken from what is left of the budget.
	end := started.Add(o.budget)
	reserve := time.Duration(0)
	if !o.skips("realnode") {
		reserve += time.Minute
	}
	if !o.skips("server") {
		reserve += map[bool]time.Duration{true: 2 * time.Minute, false: 7 * time.Minute / 2}[o.quick]
	}
	b.deadline = end.Add(-reserve)
	peers := o.budget - reserve
	if !o.skips("compare") || !o.skips("capacity") {
		b.warmUp(ctx)
	}
	if !o.skips("compare") {
		b.createDelete(ctx, peers*20/100)
		b.idleRSS(ctx, peers*18/100)
		noWait := *eph
		noWait.nodesNoWait = true
		b.nodes(ctx, &noWait, peers*18/100)
	}
	if !o.skips("capacity") {
		b.capacity(ctx, peers*44/100/3)
	}
	// Each go test run may take a share of what is left, never less than
	// a floor that fits one iteration.
	share := func(fraction float64, floor time.Duration) time.Duration {
		return min(o.goTestTimeout, max(floor, time.Duration(float64(time.Until(end))*fraction)))
	}
	if !o.skips("realnode") && ctx.Err() == nil {
		b.realNode(ctx, e2e, share(0.25, 2*time.Minute))
	}
	if !o.skips("server") && ctx.Err() == nil {
		b.claims(ctx, e2e, share)
	}
	if s, ok := summarize(b.loads); ok {
		b.res.Facts = append(b.res.Facts, fact{"1-min load average before each side-by-side scenario", fmt.Sprintf("%.2f to %.2f", s.Min, s.Max)})
	}
	b.res.Facts = append(b.res.Facts, fact{"load average at end (1, 5, 15 min)", loadAverage()})
	b.res.Notes = append(b.res.Notes, noiseNote(b.loads, runtime.NumCPU()))
	b.res.Duration = time.Since(started)
	return b.res, nil
}

// noiseNote says how busy the machine was before the side-by-side
// scenarios, when none of the run's own clusters ran.
func noiseNote(loads []float64, cores int) string {
	const shared = "The machine is shared with other engineers' tests. "
	s, ok := summarize(loads)
	switch {
	case !ok:
		return shared + "Its load was not sampled."
	case s.Max > float64(cores):
		return shared + fmt.Sprintf("Before some of the side-by-side scenarios its 1-minute load average "+
			"was up to %.1f on %d cores: other work competed for the CPU, so absolute numbers are noisy. "+
			"The ratios come from alternating runs, and are steadier.", s.Max, cores)
	default:
		return shared + fmt.Sprintf("Its 1-minute load average stayed at or below %.1f on %d cores before "+
			"the side-by-side scenarios (the load at the end includes this run's own 22 warm clusters of the "+
			"server benchmark).", s.Max, cores)
	}
}
