package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// table is a Markdown table with columns padded to one width, readable in a
// terminal and in the rendered doc alike.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	widths := make([]int, len(t.header))
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, c := range row {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i := range widths {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			b.WriteString(" " + c + strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)) + " |")
		}
		b.WriteString("\n")
	}
	line(t.header)
	b.WriteString("|")
	for _, w := range widths {
		b.WriteString(strings.Repeat("-", w+2) + "|")
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

// number formats a value of unit: seconds with two decimals, MiB and ms as
// integers.
func number(v float64, unit string) string {
	switch unit {
	case "s":
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
}

// cell is "median (min–max)" of samples, or a dash without any.
func cell(vs []float64, unit string) string {
	s, ok := summarize(vs)
	if !ok {
		return "—"
	}
	if s.N == 1 {
		return number(s.Median, unit)
	}
	return fmt.Sprintf("%s (%s–%s)", number(s.Median, unit), number(s.Min, unit), number(s.Max, unit))
}

// ratioCell is the ratio of medians a/b as "0.42×", or a dash.
func ratioCell(a, b []float64) string {
	r, ok := ratio(a, b)
	if !ok {
		return "—"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "×"
}

// compareTable renders the side-by-side table; the first tool is ephemera,
// and each other tool gets a ratio column.
func compareTable(tools []string, metrics []*metric) *table {
	t := &table{header: []string{"measurement", "n"}}
	t.header = append(t.header, tools...)
	for _, peer := range tools[1:] {
		t.header = append(t.header, tools[0]+" / "+peer)
	}
	for _, m := range metrics {
		row := []string{m.Title + " (" + m.Unit + ")", sampleCounts(tools, m)}
		for _, tool := range tools {
			switch {
			case m.NA[tool] != "":
				row = append(row, "n/a")
			case m.Failed[tool] > 0:
				row = append(row, fmt.Sprintf("%s, %d failed", cell(m.Values[tool], m.Unit), m.Failed[tool]))
			default:
				row = append(row, cell(m.Values[tool], m.Unit))
			}
		}
		for _, peer := range tools[1:] {
			if m.NA[peer] != "" {
				row = append(row, "n/a")
				continue
			}
			row = append(row, ratioCell(m.Values[tools[0]], m.Values[peer]))
		}
		t.add(row...)
	}
	return t
}

// sampleCounts is the number of samples of a row: one number when every
// measured tool has the same count, else one per tool.
func sampleCounts(tools []string, m *metric) string {
	var counts []string
	same := true
	for _, tool := range tools {
		if m.NA[tool] != "" {
			continue
		}
		n := strconv.Itoa(len(m.Values[tool]))
		if len(counts) > 0 && counts[0] != n {
			same = false
		}
		counts = append(counts, n)
	}
	if len(counts) == 0 {
		return "0"
	}
	if same {
		return counts[0]
	}
	return strings.Join(counts, "/")
}

// capacityTable renders the idle-cluster runs. The projections divide
// what the machine had by what one idle cluster took: MemAvailable at the
// start for memory, half the cores for CPU (the point where, roughly, a
// create competing with idle clusters takes twice as long).
func capacityTable(cs []capacity, cores int) *table {
	t := &table{header: []string{"tool", "idle clusters that fit", "why the run stopped",
		"create → API usable (s): cold median; first → last create of the run",
		"per idle cluster: MemAvailable used (MiB), CPU (% of a core)",
		"projected: idle clusters in MemAvailable, in half the cores"}}
	for _, c := range cs {
		fit := strconv.Itoa(c.Fit)
		if c.Reason == reasonBound {
			fit = "≥ " + fit
		}
		creates := "—"
		if len(c.Creates) > 0 {
			creates = fmt.Sprintf("%s; %s → %s", number(c.Baseline, "s"), number(c.Creates[0], "s"), number(c.Creates[len(c.Creates)-1], "s"))
		}
		per, projected := "—", "—"
		if c.MemPerCluster > 0 || c.CPUPerCluster > 0 {
			per = fmt.Sprintf("%s MiB, %s%%", number(c.MemPerCluster, "MiB"), strconv.FormatFloat(100*c.CPUPerCluster, 'f', 1, 64))
			mem, cpu := "—", "—"
			if c.MemPerCluster > 0 {
				mem = "~" + strconv.Itoa(int(c.MemAvailableStart/c.MemPerCluster))
			}
			if c.CPUPerCluster > 0 {
				cpu = "~" + strconv.Itoa(int(float64(cores)/2/c.CPUPerCluster))
			}
			projected = mem + ", " + cpu
		}
		t.add(c.Tool, fit, c.Reason, creates, per, projected)
	}
	return t
}

// Why a capacity run stopped.
const (
	reasonDoubled = "create took over 2× the cold create twice in a row"
	reasonMemory  = "MemAvailable below the reserve"
	reasonBound   = "bound reached"
	reasonBudget  = "time budget"
	reasonFailed  = "a create failed"
)

// claimsTable renders the warm-pool claim latencies against Boskos' poll.
func claimsTable(cs []claimResult) *table {
	t := &table{header: []string{"claims at once", "samples", "p50 (ms)", "p99 (ms)", "min (ms)", "max (ms)", "p50 / Boskos' 3 s poll"}}
	for _, c := range cs {
		if c.Err != "" {
			t.add(strconv.Itoa(c.Concurrency), "failed", "—", "—", "—", "—", "—")
			continue
		}
		t.add(strconv.Itoa(c.Concurrency), strconv.Itoa(c.Samples), number(c.P50, "ms"), number(c.P99, "ms"),
			number(c.Min, "ms"), number(c.Max, "ms"), strconv.FormatFloat(c.P50/3000, 'f', 3, 64)+"×")
	}
	return t
}

// realNodeTable renders create → first pod Running.
func realNodeTable(r *realNodeResult) *table {
	t := &table{header: []string{"measurement", "samples", "median (s)", "min (s)", "max (s)", "kind, k3d"}}
	peers := "not measured: they need a Docker engine, which this machine lacks"
	if r.Err != "" {
		t.add("create → first pod Running", "failed", "—", "—", "—", peers)
		return t
	}
	t.add("create → first pod Running", strconv.Itoa(r.Samples), number(r.P50/1000, "s"), number(r.Min/1000, "s"), number(r.Max/1000, "s"), peers)
	return t
}

// humanDuration is "12 min 3 s".
func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%d s", int(d.Seconds()))
	}
	return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
}
