package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// bench runs the scenarios and collects results. Clusters are made one at
// a time; every one made is in live until deleted, so that cleanup finds it.
type bench struct {
	opts    options
	log     io.Writer
	drivers []driver
	// broken holds tools that failed their warm-up: left out from then on.
	broken map[string]string
	live   map[*cluster]driver
	seq    int
	res    *results
	// deadline ends the peer scenarios early enough for the rest.
	deadline time.Time
	// loads are 1-minute load averages sampled before each peer scenario,
	// while none of this run's clusters ran.
	loads []float64
}

func (b *bench) sampleLoad() { b.loads = append(b.loads, load1()) }

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, format+"\n", args...)
}

// fail records a failed measurement: the run exits non-zero.
func (b *bench) fail(tool, what string, err error) {
	msg := fmt.Sprintf("%s, %s: %s", tool, what, firstLine(err.Error()))
	if len(msg) > 400 {
		msg = msg[:400] + "…"
	}
	b.res.Failures = append(b.res.Failures, msg)
	b.logf("   ✗ %s\n%s", msg, indent(err.Error()))
}

func indent(s string) string {
	return "     " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n     ")
}

// name is a fresh cluster name; the fixed width keeps one name from being
// a prefix of another.
func (b *bench) name(d driver) string {
	b.seq++
	return fmt.Sprintf("%.1s-bench-%03d", d.Name(), b.seq)
}

// active are the drivers still measured, in rotated order for round r.
func (b *bench) active(r int, withNodes bool) []driver {
	var ds []driver
	for _, d := range b.drivers {
		if b.broken[d.Name()] != "" {
			continue
		}
		if withNodes && !supportsNodes(d) {
			continue
		}
		ds = append(ds, d)
	}
	if len(ds) == 0 {
		return nil
	}
	r %= len(ds)
	return append(ds[r:], ds[:r]...)
}

func supportsNodes(d driver) bool {
	_, isEnvtest := d.(*envtestDriver)
	return !isEnvtest
}

// more reports whether another round fits: ctx alive, the scenario within
// its cap and the run within its deadline.
func (b *bench) more(ctx context.Context, start time.Time, limit time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	if time.Since(start) > limit || time.Now().After(b.deadline) {
		b.logf("   (stopping this scenario early: time budget)")
		return false
	}
	return true
}

// create makes a cluster and returns how long until its API was usable.
func (b *bench) create(ctx context.Context, d driver, nodes int) (*cluster, time.Duration, error) {
	name := b.name(d)
	start := time.Now()
	c, err := d.Create(ctx, name, nodes)
	if c != nil {
		b.live[c] = d
	}
	if err != nil {
		return c, 0, fmt.Errorf("create %s: %w", name, err)
	}
	if err := waitAPIUsable(ctx, c, time.Minute); err != nil {
		return c, 0, err
	}
	return c, time.Since(start), nil
}

// remove deletes a cluster and returns how long until its processes were
// gone.
func (b *bench) remove(ctx context.Context, d driver, c *cluster) (time.Duration, error) {
	if c == nil {
		return 0, nil
	}
	start := time.Now()
	if err := d.Delete(ctx, c); err != nil {
		return 0, fmt.Errorf("delete %s: %w", c.name, err)
	}
	if err := waitGone(ctx, c.dir, time.Minute); err != nil {
		return 0, fmt.Errorf("delete %s: %w", c.name, err)
	}
	delete(b.live, c)
	return time.Since(start), nil
}

// warmUp creates and deletes one cluster per tool, not counted: page cache,
// first-start costs, and a check that each tool works here at all.
func (b *bench) warmUp(ctx context.Context) {
	b.logf(" • Warm-up: one create and delete per tool")
	for _, d := range b.drivers {
		c, dur, err := b.create(ctx, d, 0)
		if err == nil {
			_, err = b.remove(ctx, d, c)
		}
		if err != nil {
			b.fail(d.Name(), "warm-up", err)
			b.broken[d.Name()] = "failed in warm-up"
			continue
		}
		b.logf("   %s: API usable after %s", d.Name(), dur.Round(time.Millisecond))
	}
}

// createDelete alternates cold creates (to API usable) and deletes.
func (b *bench) createDelete(ctx context.Context, limit time.Duration) {
	b.logf(" • Cold create → API usable, and delete: %d rounds", b.opts.rounds)
	b.sampleLoad()
	create := b.metric("cold create → API usable", "s")
	del := b.metric("delete → all processes gone", "s")
	start := time.Now()
	for r := 0; r < b.opts.rounds && b.more(ctx, start, limit); r++ {
		for _, d := range b.active(r, false) {
			c, dur, err := b.create(ctx, d, 0)
			if err != nil {
				create.Failed[d.Name()]++
				b.fail(d.Name(), "cold create", err)
				_, _ = b.remove(ctx, d, c)
				continue
			}
			create.Values[d.Name()] = append(create.Values[d.Name()], dur.Seconds())
			ddur, err := b.remove(ctx, d, c)
			if err != nil {
				del.Failed[d.Name()]++
				b.fail(d.Name(), "delete", err)
				continue
			}
			del.Values[d.Name()] = append(del.Values[d.Name()], ddur.Seconds())
			b.logf("   round %d %-8s create %6s  delete %6s", r+1, d.Name(), dur.Round(time.Millisecond), ddur.Round(time.Millisecond))
		}
	}
}

// idleRSS creates one cluster per tool, lets them idle side by side, and
// sums the RSS of each cluster's processes.
func (b *bench) idleRSS(ctx context.Context, limit time.Duration) {
	b.logf(" • RSS of one idle cluster: %d rounds, %s idle", b.opts.memRounds, b.opts.idle)
	b.sampleLoad()
	m := b.metric("RSS of one idle cluster, all its processes", "MiB")
	start := time.Now()
	for r := 0; r < b.opts.memRounds && b.more(ctx, start, limit); r++ {
		type made struct {
			d driver
			c *cluster
		}
		var clusters []made
		for _, d := range b.active(r, false) {
			c, _, err := b.create(ctx, d, 0)
			if err != nil {
				m.Failed[d.Name()]++
				b.fail(d.Name(), "create for RSS", err)
				_, _ = b.remove(ctx, d, c)
				continue
			}
			clusters = append(clusters, made{d, c})
		}
		sleep(ctx, b.opts.idle)
		for _, mc := range clusters {
			procs := processesUnder(mc.c.dir)
			total, by := rssMiB(procs)
			m.Values[mc.d.Name()] = append(m.Values[mc.d.Name()], total)
			b.logf("   round %d %-8s %4.0f MiB: %s", r+1, mc.d.Name(), total, breakdown(by))
			if r == 0 {
				b.res.Notes = append(b.res.Notes, fmt.Sprintf("RSS of the first idle %s cluster by process (MiB): %s.", mc.d.Name(), breakdown(by)))
			}
		}
		for _, mc := range clusters {
			if _, err := b.remove(ctx, mc.d, mc.c); err != nil {
				b.fail(mc.d.Name(), "delete after RSS", err)
			}
		}
	}
}

// breakdown is "kube-apiserver 234, etcd 48, …", largest first.
func breakdown(by map[string]float64) string {
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if by[names[i]] != by[names[j]] {
			return by[names[i]] > by[names[j]]
		}
		return names[i] < names[j]
	})
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f", n, by[n]))
	}
	return strings.Join(parts, ", ")
}

// nodes times create → 3 simulated nodes Ready and a Deployment Available,
// each tool its own way. ephemera runs twice per round: as users run it
// (create waits for the nodes and the default ServiceAccount) and with
// --wait 0 (create returns when the API answers, as kwokctl's does); the
// kwokctl samples serve both rows.
func (b *bench) nodes(ctx context.Context, noWait driver, limit time.Duration) {
	const nodes = 3
	b.logf(" • Create → %d nodes Ready + Deployment Available: %d rounds", nodes, b.opts.nodeRounds)
	b.sampleLoad()
	byDefault := b.metric("create → 3 nodes Ready + Deployment Available", "s")
	fast := b.metric("the same, ephemera with `--wait 0`", "s")
	for _, d := range b.drivers {
		if !supportsNodes(d) {
			byDefault.NA[d.Name()] = "no nodes or controllers"
			fast.NA[d.Name()] = "no nodes or controllers"
		}
	}
	type variant struct {
		d       driver
		label   string
		metrics []*metric
	}
	start := time.Now()
	for r := 0; r < b.opts.nodeRounds && b.more(ctx, start, limit); r++ {
		var vs []variant
		for _, d := range b.active(0, true) {
			if d.Name() == noWait.Name() {
				vs = append(vs, variant{d, d.Name(), []*metric{byDefault}}, variant{noWait, d.Name() + " --wait 0", []*metric{fast}})
			} else {
				vs = append(vs, variant{d, d.Name(), []*metric{byDefault, fast}})
			}
		}
		if len(vs) == 0 {
			return
		}
		k := r % len(vs)
		for _, v := range append(vs[k:], vs[:k]...) {
			name := b.name(v.d)
			t0 := time.Now()
			c, err := v.d.Create(ctx, name, nodes)
			if c != nil {
				b.live[c] = v.d
			}
			if err == nil {
				err = deployAndWait(ctx, c, nodes, 2*time.Minute)
			}
			dur := time.Since(t0)
			for _, m := range v.metrics {
				if err != nil {
					m.Failed[v.d.Name()]++
				} else {
					m.Values[v.d.Name()] = append(m.Values[v.d.Name()], dur.Seconds())
				}
			}
			if err != nil {
				b.fail(v.label, "nodes and Deployment", err)
			} else {
				b.logf("   round %d %-17s %s", r+1, v.label, dur.Round(time.Millisecond))
			}
			if _, err := b.remove(ctx, v.d, c); err != nil {
				b.fail(v.label, "delete after nodes", err)
			}
		}
	}
}

// capacity keeps creating idle clusters of each tool until create time
// doubles, memory runs short, or the bound is reached.
func (b *bench) capacity(ctx context.Context, limitPerTool time.Duration) {
	b.logf(" • Idle clusters that fit: up to %d per tool", b.opts.capacityBound)
	b.sampleLoad()
	b.res.CapacityBound = b.opts.capacityBound
	var cold map[string][]float64
	for _, m := range b.res.Compare {
		if strings.HasPrefix(m.Title, "cold create") {
			cold = m.Values
		}
	}
	for _, d := range b.active(0, false) {
		if ctx.Err() != nil {
			return
		}
		res := b.capacityOf(ctx, d, cold[d.Name()], limitPerTool)
		b.res.Capacity = append(b.res.Capacity, res)
		b.logf("   %-8s %d fit (%s); per idle cluster: MemAvailable %.0f MiB, CPU %.1f%% of a core", d.Name(), res.Fit, res.Reason, res.MemPerCluster, 100*res.CPUPerCluster)
	}
}

func (b *bench) capacityOf(ctx context.Context, d driver, cold []float64, limit time.Duration) capacity {
	res := capacity{Tool: d.Name(), MemAvailableStart: memAvailableMiB()}
	if s, ok := summarize(cold); ok {
		res.Baseline = s.Median
	}
	var made []*cluster
	defer func() {
		for _, c := range made {
			if _, err := b.remove(ctx, d, c); err != nil {
				b.fail(d.Name(), "delete after capacity run", err)
			}
		}
	}()
	start := time.Now()
	slow := 0
	for {
		switch {
		case len(made) >= b.opts.capacityBound:
			res.Reason, res.Fit = reasonBound, len(made)
		case memAvailableMiB() < b.opts.memReserve:
			res.Reason, res.Fit = reasonMemory, len(made)
		case ctx.Err() != nil || time.Since(start) > limit || time.Now().After(b.deadline):
			res.Reason, res.Fit = reasonBudget, len(made)
		}
		if res.Reason != "" {
			break
		}
		c, dur, err := b.create(ctx, d, 0)
		if c != nil {
			made = append(made, c)
		}
		if err != nil {
			b.fail(d.Name(), fmt.Sprintf("create with %d idle clusters", len(res.Creates)), err)
			res.Reason, res.Fit = reasonFailed, len(res.Creates)
			break
		}
		if res.Baseline == 0 {
			res.Baseline = dur.Seconds()
		}
		res.Creates = append(res.Creates, dur.Seconds())
		b.logf("   %-8s create with %2d idle: %s", d.Name(), len(res.Creates)-1, dur.Round(time.Millisecond))
		if dur.Seconds() > 2*res.Baseline {
			slow++
		} else {
			slow = 0
		}
		if slow == 2 {
			res.Reason, res.Fit = reasonDoubled, len(res.Creates)-2
			break
		}
		sleep(ctx, b.opts.settle)
	}
	if n := len(res.Creates); n > 0 && ctx.Err() == nil {
		res.MemPerCluster = max(0, (res.MemAvailableStart-memAvailableMiB())/float64(n))
		res.CPUPerCluster = b.idleCPU(ctx, made) / float64(n)
	}
	return res
}

// idleCPU is how many cores the clusters' processes use together while
// idle: after --idle, over --cpu-window.
func (b *bench) idleCPU(ctx context.Context, clusters []*cluster) float64 {
	procs := func() []process {
		var all []process
		for _, c := range clusters {
			all = append(all, processesUnder(c.dir)...)
		}
		return all
	}
	// The last cluster made has only just settled: let its start-up end.
	sleep(ctx, b.opts.idle)
	before, t0 := cpuSeconds(procs()), time.Now()
	sleep(ctx, b.opts.cpuWindow)
	return max(0, cpuSeconds(procs())-before) / time.Since(t0).Seconds()
}

// claims runs BenchmarkClaimWarmPool at 1 and 20 concurrent claims.
func (b *bench) claims(ctx context.Context, e2e *e2eBench, timeout func(fraction float64, floor time.Duration) time.Duration) {
	for _, c := range []struct {
		concurrency, iters int
		fraction           float64
		floor              time.Duration
	}{{1, b.opts.claimIters1, 0.3, 90 * time.Second}, {20, b.opts.claimIters20, 1, 150 * time.Second}} {
		if ctx.Err() != nil {
			return
		}
		pattern := fmt.Sprintf("ClaimWarmPool/concurrent-%d$", c.concurrency)
		b.logf(" • Server mode: claims from a warm pool, %d at once, %d iterations (go test)", c.concurrency, c.iters)
		res := claimResult{Concurrency: c.concurrency, Command: e2e.command(pattern, c.iters)}
		out, err := e2e.run(ctx, pattern, c.iters, timeout(c.fraction, c.floor))
		var gb goBench
		if err == nil {
			var ok bool
			if gb, ok = findGoBench(out, fmt.Sprintf("BenchmarkClaimWarmPool/concurrent-%d", c.concurrency)); !ok {
				err = fmt.Errorf("no result for %s in the go test output", pattern)
			}
		}
		if err != nil {
			res.Err = err.Error()
			b.fail("ephemera", fmt.Sprintf("warm-pool claims, %d at once", c.concurrency), err)
		} else {
			res.Samples = gb.N * c.concurrency
			res.P50, res.P99 = gb.Metrics["claim-p50-ms"], gb.Metrics["claim-p99-ms"]
			res.Min, res.Max = gb.Metrics["claim-min-ms"], gb.Metrics["claim-max-ms"]
		}
		b.res.Claims = append(b.res.Claims, res)
	}
}

// realNode runs BenchmarkCreateFirstPodRunning.
func (b *bench) realNode(ctx context.Context, e2e *e2eBench, timeout time.Duration) {
	const pattern = "CreateFirstPodRunning$"
	b.logf(" • Real node: create → first pod Running, %d iterations (go test)", b.opts.realNodeIters)
	res := &realNodeResult{Command: e2e.command(pattern, b.opts.realNodeIters)}
	out, err := e2e.run(ctx, pattern, b.opts.realNodeIters, timeout)
	var gb goBench
	if err == nil {
		var ok bool
		if gb, ok = findGoBench(out, "BenchmarkCreateFirstPodRunning"); !ok {
			err = fmt.Errorf("no result for %s in the go test output", pattern)
		}
	}
	if err != nil {
		res.Err = err.Error()
		b.fail("ephemera", "real node, first pod Running", err)
	} else {
		res.Samples = gb.N
		res.P50, res.Min, res.Max = gb.Metrics["first-pod-running-p50-ms"], gb.Metrics["first-pod-running-min-ms"], gb.Metrics["first-pod-running-max-ms"]
		res.DeleteP50 = gb.Metrics["delete-p50-ms"]
	}
	b.res.RealNode = res
}

// metric adds a row to the side-by-side table.
func (b *bench) metric(title, unit string) *metric {
	m := newMetric(title, unit)
	for tool, why := range b.broken {
		if why != "" {
			m.NA[tool] = why
		}
	}
	b.res.Compare = append(b.res.Compare, m)
	return m
}

// cleanup deletes every cluster still alive, each with its own tool.
func (b *bench) cleanup(ctx context.Context) {
	clusters := make([]*cluster, 0, len(b.live))
	for c := range b.live {
		clusters = append(clusters, c)
	}
	slices.SortFunc(clusters, func(x, y *cluster) int { return strings.Compare(x.name, y.name) })
	for _, c := range clusters {
		if _, err := b.remove(ctx, b.live[c], c); err != nil {
			b.logf("   cleanup: %v", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
