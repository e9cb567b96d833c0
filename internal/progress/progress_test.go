package progress

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock                   { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }
func newWriter(terminal bool) (*writer, *bytes.Buffer, *fakeClock) {
	var buf bytes.Buffer
	clock := newClock()
	return &writer{w: &buf, terminal: terminal, now: clock.now}, &buf, clock
}

// op is one call on a reporter, or a move of the clock.
type op struct {
	start   string
	update  string
	end     *bool
	advance time.Duration
}

var (
	success = true
	failure = false
)

func run(w *writer, clock *fakeClock, ops []op) {
	for _, o := range ops {
		switch {
		case o.advance != 0:
			clock.advance(o.advance)
		case o.start != "":
			w.Start(o.start)
		case o.update != "":
			w.Update(o.update)
		case o.end != nil:
			w.End(*o.end)
		}
	}
}

func TestPlain(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		want string
	}{
		{
			name: "success",
			ops:  []op{{start: "Build"}, {advance: 1500 * time.Millisecond}, {end: &success}},
			want: " • Build\n ✓ Build (1.5s)\n",
		},
		{
			name: "failure",
			ops:  []op{{start: "Build"}, {advance: 250 * time.Millisecond}, {end: &failure}},
			want: " • Build\n ✗ Build (250ms)\n",
		},
		{
			name: "long step rounds to seconds",
			ops:  []op{{start: "Build"}, {advance: 90*time.Second + 400*time.Millisecond}, {end: &success}},
			want: " • Build\n ✓ Build (1m30s)\n",
		},
		{
			name: "seconds round to 10ms",
			ops:  []op{{start: "Build"}, {advance: 2*time.Second + 123456*time.Microsecond}, {end: &success}},
			want: " • Build\n ✓ Build (2.12s)\n",
		},
		{
			name: "updates at least 10s apart",
			ops: []op{
				{start: "Build"},
				{advance: 5 * time.Second}, {update: "at 5s"}, // too early
				{advance: 5 * time.Second}, {update: "at 10s"}, // exactly 10s after start
				{advance: 9 * time.Second}, {update: "at 19s"}, // 9s after the last
				{advance: 1 * time.Second}, {update: "at 20s"},
				{advance: 30 * time.Second}, {update: "at 50s"},
				{end: &success},
			},
			want: " • Build\n   at 10s (10s)\n   at 20s (20s)\n   at 50s (50s)\n ✓ Build (50s)\n",
		},
		{
			name: "a new step resets the throttle",
			ops: []op{
				{start: "A"}, {advance: 8 * time.Second}, {start: "B"},
				{advance: 3 * time.Second}, {update: "3s into B"},
				{advance: 7 * time.Second}, {update: "10s into B"},
				{end: &success},
			},
			want: " • A\n ✓ A (8s)\n • B\n   10s into B (10s)\n ✓ B (10s)\n",
		},
		{
			name: "start while a step is open ends it as success",
			ops:  []op{{start: "A"}, {advance: 2 * time.Second}, {start: "B"}, {advance: time.Second}, {end: &failure}},
			want: " • A\n ✓ A (2s)\n • B\n ✗ B (1s)\n",
		},
		{
			name: "update and end without a step print nothing",
			ops:  []op{{advance: time.Minute}, {update: "orphan"}, {end: &success}, {end: &failure}},
			want: "",
		},
		{
			name: "end twice prints once",
			ops:  []op{{start: "A"}, {end: &success}, {advance: time.Minute}, {update: "late"}, {end: &failure}},
			want: " • A\n ✓ A (0s)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, buf, clock := newWriter(false)
			run(w, clock, tt.ops)
			if got := buf.String(); got != tt.want {
				t.Errorf("output:\n%q\nwant:\n%q", got, tt.want)
			}
			if strings.Contains(buf.String(), "\r") {
				t.Errorf("plain output contains a carriage return: %q", buf.String())
			}
		})
	}
}

func TestTerminal(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		want string
	}{
		{
			name: "start, updates, end",
			ops: []op{
				{start: "Build"},
				{advance: time.Second}, {update: "one"},
				{advance: time.Second}, {update: "two"}, // not throttled
				{advance: 1200 * time.Millisecond}, {end: &success},
			},
			want: " • Build …" +
				"\r\033[K • Build … one (1s)" +
				"\r\033[K • Build … two (2s)" +
				"\r\033[K ✓ Build (3.2s)\n",
		},
		{
			name: "failure",
			ops:  []op{{start: "Build"}, {advance: 10 * time.Millisecond}, {end: &failure}},
			want: " • Build …\r\033[K ✗ Build (10ms)\n",
		},
		{
			name: "start ends the open step",
			ops:  []op{{start: "A"}, {advance: time.Second}, {start: "B"}, {end: &success}},
			want: " • A …\r\033[K ✓ A (1s)\n • B …\r\033[K ✓ B (0s)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, buf, clock := newWriter(true)
			run(w, clock, tt.ops)
			if got := buf.String(); got != tt.want {
				t.Errorf("output:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	for _, terminal := range []bool{false, true} {
		var buf bytes.Buffer
		r := New(&buf, terminal)
		r.Start("Step")
		r.Update("detail")
		r.End(true)
		out := buf.String()
		if !strings.HasPrefix(out, " • Step") || !strings.Contains(out, " ✓ Step (") || !strings.HasSuffix(out, ")\n") {
			t.Errorf("terminal=%v: output %q", terminal, out)
		}
		if got := strings.Contains(out, "\r"); got != terminal {
			t.Errorf("terminal=%v: output %q rewrites lines: %v", terminal, out, got)
		}
		// The real clock is not 10s fast: plain output shows no update.
		if got := strings.Contains(out, "detail"); got != terminal {
			t.Errorf("terminal=%v: output %q shows the update: %v", terminal, out, got)
		}
	}
}

func TestDiscard(t *testing.T) {
	if _, ok := Discard.(*writer); ok {
		t.Fatal("Discard is a writer")
	}
	// Discard has nowhere to write; prove it does not fall back to the
	// standard streams.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	Discard.Start("step")
	Discard.Update("detail")
	Discard.End(false)
	Discard.End(true)
	os.Stdout, os.Stderr = stdout, stderr
	w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Fatalf("Discard printed %q", out)
	}
}

// TestConcurrent is meant for -race: the reporter is shared by goroutines.
func TestConcurrent(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, true)
	r.Start("Step")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				r.Update("x")
			}
		})
	}
	wg.Wait()
	r.End(true)
	if n := strings.Count(buf.String(), "\r\033[K • Step … x ("); n != 400 {
		t.Fatalf("got %d update lines, want 400", n)
	}
}
