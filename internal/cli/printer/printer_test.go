package printer

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAgeAndRelative(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		t            time.Time
		wantAge      string // empty: Age is not checked
		wantRelative string
	}{
		{name: "zero", t: time.Time{}, wantAge: "-", wantRelative: "-"},
		{name: "past", t: now.Add(-5 * time.Minute), wantAge: "5m", wantRelative: "5m ago"},
		{name: "future", t: now.Add(29*time.Minute + 30*time.Second), wantRelative: "in 29m"},
		{name: "now", t: now, wantAge: "0s", wantRelative: "in 0s"},
		{name: "days", t: now.Add(-50 * time.Hour), wantAge: "2d2h", wantRelative: "2d2h ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Age(tt.t, now); tt.wantAge != "" && got != tt.wantAge {
				t.Errorf("Age = %q, want %q", got, tt.wantAge)
			}
			if got := Relative(tt.t, now); got != tt.wantRelative {
				t.Errorf("Relative = %q, want %q", got, tt.wantRelative)
			}
		})
	}
}

func TestRows(t *testing.T) {
	var b strings.Builder
	if err := Rows(&b, []string{"NAME", "PHASE"}, [][]string{{"a", "Ready"}, {"longer", OrDash("")}}); err != nil {
		t.Fatal(err)
	}
	want := "NAME     PHASE\na        Ready\nlonger   -\n"
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("Rows mismatch (-want +got):\n%s", d)
	}
}
