package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// What BenchmarkServeCycles samples of serve, and how it decides that serve
// stayed flat.

// serveSample is what serve holds after some cycles.
type serveSample struct {
	cycle   int
	at      time.Duration
	rssMiB  float64
	heapMiB float64
	gorout  float64
	fds     int
	threads int
	// procs are serve's live descendants, zombies its exited ones not yet
	// reaped, clusterProcs live processes naming a cluster's dir.
	procs, zombies, clusterProcs int
}

var benchStart = time.Now()

func (s *server) sample(cycle int, clustersDir string) serveSample {
	pid := s.cmd.Process.Pid
	out := serveSample{cycle: cycle, at: time.Since(benchStart)}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "VmRSS:":
			kib, _ := strconv.ParseFloat(f[1], 64)
			out.rssMiB = kib / 1024
		case len(f) >= 2 && f[0] == "Threads:":
			out.threads, _ = strconv.Atoi(f[1])
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	out.fds = len(fds)
	out.heapMiB = s.metric("go_memstats_heap_inuse_bytes", "") / (1 << 20)
	out.gorout = s.metric("go_goroutines", "")
	out.procs, out.zombies = descendants(pid)
	out.clusterProcs = len(processesUnder(clustersDir))
	return out
}

// descendants counts the live and the exited (zombie) processes below pid.
func descendants(pid int) (live, zombies int) {
	children := map[int][]int{}
	zombie := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
		zombie[p] = f[0] == "Z" || f[0] == "X"
	}
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		if zombie[queue[0]] {
			zombies++
		} else {
			live++
		}
		queue = append(queue, children[queue[0]]...)
	}
	return live, zombies
}

var curveHeader = []string{"cycle", "elapsed_s", "rss_mib", "heap_inuse_mib", "goroutines", "fds", "threads", "procs", "zombies", "cluster_procs"}

func (c serveSample) fields() []string {
	return []string{
		strconv.Itoa(c.cycle), fmt.Sprintf("%.0f", c.at.Seconds()), fmt.Sprintf("%.1f", c.rssMiB), fmt.Sprintf("%.1f", c.heapMiB),
		fmt.Sprintf("%.0f", c.gorout), strconv.Itoa(c.fds), strconv.Itoa(c.threads),
		strconv.Itoa(c.procs), strconv.Itoa(c.zombies), strconv.Itoa(c.clusterProcs),
	}
}

func curveTable(curve []serveSample) string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(curveHeader, "\t")+"\t")
	for _, c := range curve {
		fmt.Fprintln(tw, strings.Join(c.fields(), "\t")+"\t")
	}
	_ = tw.Flush()
	return sb.String()
}

func curveCSV(curve []serveSample) string {
	var sb strings.Builder
	sb.WriteString(strings.Join(curveHeader, ",") + "\n")
	for _, c := range curve {
		sb.WriteString(strings.Join(c.fields(), ",") + "\n")
	}
	return sb.String()
}

// checkFlat returns each quantity's value at the end and its growth from
// the first sample after the warm-up (50 cycles, or a tenth of a shorter
// run) to the last, as benchmark metrics, and an error for each that grew
// beyond its tolerance. Counts (file descriptors, goroutines, threads) must
// not grow by more than a few: a leak of one per cycle grows by hundreds.
// Memory fluctuates with the garbage collector, so RSS and heap fail only
// when both the last sample and the least-squares trend over the window
// grew by more than the tolerance. Processes must be back to where they
// were before the first cycle, with none of a cluster left and no zombie.
func checkFlat(curve []serveSample) (metrics map[string]float64, errs []error) {
	lastCycle := curve[len(curve)-1].cycle
	warm := min(50, lastCycle/10)
	i := 0
	for i < len(curve)-1 && curve[i].cycle < warm {
		i++
	}
	window := curve[i:]
	first, last := window[0], window[len(window)-1]
	metrics = map[string]float64{}
	for _, q := range []struct {
		name, unit string
		value      func(serveSample) float64
		tolerance  float64
		noisy      bool
	}{
		{"rss", "MiB", func(c serveSample) float64 { return c.rssMiB }, 32, true},
		{"heap", "MiB", func(c serveSample) float64 { return c.heapMiB }, 16, true},
		{"goroutines", "", func(c serveSample) float64 { return c.gorout }, 30, false},
		{"fds", "", func(c serveSample) float64 { return float64(c.fds) }, 10, false},
		{"threads", "", func(c serveSample) float64 { return float64(c.threads) }, 10, false},
	} {
		suffix := ""
		if q.unit != "" {
			suffix = "-" + q.unit
		}
		growth := q.value(last) - q.value(first)
		metrics[q.name+suffix] = q.value(last)
		metrics[q.name+"-growth"+suffix] = growth
		trend := trendGrowth(window, q.value)
		if growth > q.tolerance && (!q.noisy || trend > q.tolerance) {
			errs = append(errs, fmt.Errorf("%s grew from %.1f%s after cycle %d to %.1f%s after cycle %d (trend +%.1f; tolerance %.0f)",
				q.name, q.value(first), q.unit, first.cycle, q.value(last), q.unit, last.cycle, trend, q.tolerance))
		}
	}
	metrics["procs"] = float64(last.procs)
	metrics["procs-growth"] = float64(last.procs - curve[0].procs)
	if last.procs != curve[0].procs || last.zombies > 0 || last.clusterProcs > 0 {
		errs = append(errs, fmt.Errorf("after %d cycles serve has %d processes below it (%d before the first cycle), %d zombies, and %d processes of clusters are left",
			last.cycle, last.procs, curve[0].procs, last.zombies, last.clusterProcs))
	}
	return metrics, errs
}

// trendGrowth is the rise of the least-squares line through the samples
// from the first to the last.
func trendGrowth(window []serveSample, value func(serveSample) float64) float64 {
	n := float64(len(window))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, c := range window {
		x, y := float64(c.cycle), value(c)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	slope := (n*sxy - sx*sy) / den
	return slope * float64(window[len(window)-1].cycle-window[0].cycle)
}

// TestCheckFlat: the benchmark's verdict fails on steady growth of any
// quantity and on processes left behind, and not on the garbage
// collector's ups and downs.
func TestCheckFlat(t *testing.T) {
	// flat returns a curve of 500 cycles sampled every 25 in which nothing
	// grows, changed by edit.
	flat := func(edit func(c *serveSample)) []serveSample {
		var curve []serveSample
		for cycle := 0; cycle <= 500; cycle += 25 {
			c := serveSample{cycle: cycle, rssMiB: 75, heapMiB: 14, gorout: 140, fds: 16, threads: 10, procs: 5}
			if edit != nil {
				edit(&c)
			}
			curve = append(curve, c)
		}
		return curve
	}
	for _, tc := range []struct {
		name  string
		curve []serveSample
		fails string
	}{
		{name: "flat", curve: flat(nil)},
		{name: "start-up growth before cycle 50 is not counted", curve: flat(func(c *serveSample) {
			if c.cycle < 50 {
				c.fds, c.gorout, c.rssMiB = 5, 100, 40
			}
		})},
		{name: "heap up and down with the garbage collector", curve: flat(func(c *serveSample) {
			c.heapMiB += float64(c.cycle/25%2) * 12
		})},
		{name: "one heap spike at the end", curve: flat(func(c *serveSample) {
			if c.cycle == 500 {
				c.heapMiB += 20
			}
		})},
		{name: "a file descriptor every 10 cycles", curve: flat(func(c *serveSample) { c.fds += c.cycle / 10 }), fails: "fds grew"},
		{name: "a goroutine every 10 cycles", curve: flat(func(c *serveSample) { c.gorout += float64(c.cycle / 10) }), fails: "goroutines grew"},
		{name: "a thread every 20 cycles", curve: flat(func(c *serveSample) { c.threads += c.cycle / 20 }), fails: "threads grew"},
		{name: "100 KiB of heap a cycle", curve: flat(func(c *serveSample) { c.heapMiB += float64(c.cycle) * 0.1 }), fails: "heap grew"},
		{name: "100 KiB of RSS a cycle", curve: flat(func(c *serveSample) { c.rssMiB += float64(c.cycle) * 0.1 }), fails: "rss grew"},
		{name: "a process left", curve: flat(func(c *serveSample) {
			if c.cycle == 500 {
				c.procs++
			}
		}), fails: "6 processes below it"},
		{name: "a zombie", curve: flat(func(c *serveSample) {
			if c.cycle == 500 {
				c.zombies = 1
			}
		}), fails: "1 zombies"},
		{name: "a cluster process escaped serve", curve: flat(func(c *serveSample) {
			if c.cycle == 500 {
				c.clusterProcs = 1
			}
		}), fails: "1 processes of clusters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := checkFlat(tc.curve)
			msg := fmt.Sprint(errs)
			switch {
			case tc.fails == "" && len(errs) > 0:
				t.Errorf("flat enough, yet: %v", errs)
			case tc.fails != "" && (len(errs) != 1 || !strings.Contains(msg, tc.fails)):
				t.Errorf("errors %v, want one with %q", errs, tc.fails)
			}
		})
	}
}
