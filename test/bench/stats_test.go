package main

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []float64
		want   summary
		wantOK bool
	}{
		{name: "none"},
		{name: "one", in: []float64{2}, want: summary{N: 1, Min: 2, Median: 2, Max: 2}, wantOK: true},
		{name: "odd, unsorted", in: []float64{3, 1, 2}, want: summary{N: 3, Min: 1, Median: 2, Max: 3}, wantOK: true},
		{name: "even: mean of the middle two", in: []float64{4, 1, 3, 2}, want: summary{N: 4, Min: 1, Median: 2.5, Max: 4}, wantOK: true},
		{name: "repeated", in: []float64{5, 5, 1, 5}, want: summary{N: 4, Min: 1, Median: 5, Max: 5}, wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			got, ok := summarize(tc.in)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(in, tc.in); diff != "" {
				t.Errorf("summarize changed its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	vs := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	for _, tc := range []struct {
		p    float64
		want float64
	}{
		{0, 1}, {0.5, 6}, {0.9, 9}, {0.99, 10}, {1, 10},
	} {
		if got := percentile(vs, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); !math.IsNaN(got) {
		t.Errorf("percentile of nothing = %v, want NaN", got)
	}
}

func TestRatio(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a, b   []float64
		want   float64
		wantOK bool
	}{
		{name: "medians", a: []float64{1, 2, 30}, b: []float64{4, 4, 1}, want: 0.5, wantOK: true},
		{name: "no samples of a", b: []float64{1}},
		{name: "no samples of b", a: []float64{1}},
		{name: "zero median of b", a: []float64{1}, b: []float64{0}},
		{name: "peer faster", a: []float64{3}, b: []float64{1.5}, want: 2, wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ratio(tc.a, tc.b)
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("ratio = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
