package main

import (
	"math"
	"slices"
)

// summary describes a set of samples.
type summary struct {
	N                int
	Min, Median, Max float64
}

// summarize returns the summary of vs; ok is false without samples. The
// median of an even count is the mean of the two middle samples.
func summarize(vs []float64) (s summary, ok bool) {
	if len(vs) == 0 {
		return summary{}, false
	}
	sorted := slices.Clone(vs)
	slices.Sort(sorted)
	n := len(sorted)
	s = summary{N: n, Min: sorted[0], Max: sorted[n-1]}
	if n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return s, true
}

// percentile is the nearest-rank percentile (p in [0, 1]) the e2e
// benchmarks report: sorted[round(p*(n-1))].
func percentile(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(vs)
	slices.Sort(sorted)
	return sorted[int(p*float64(len(sorted)-1)+0.5)]
}

// ratio is a/b of two medians; ok is false when either is missing or b is
// zero.
func ratio(a, b []float64) (float64, bool) {
	sa, okA := summarize(a)
	sb, okB := summarize(b)
	if !okA || !okB || sb.Median == 0 {
		return 0, false
	}
	return sa.Median / sb.Median, true
}
