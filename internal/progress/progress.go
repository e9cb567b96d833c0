package progress

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Reporter shows the steps of a long operation. Start begins a step, Update
// adds detail to it (throttled when not on a terminal), End closes it with
// success or failure. Implementations are safe for concurrent use.
type Reporter interface {
	Start(step string)
	Update(detail string)
	End(ok bool)
}

// Discard is a Reporter that prints nothing.
var Discard Reporter = discard{}

type discard struct{}

func (discard) Start(string)  {}
func (discard) Update(string) {}
func (discard) End(bool)      {}

// New returns a Reporter writing to w. On a terminal it rewrites the current
// line; otherwise it prints one line per step, updates at most every
// plainInterval, and the duration of every finished step.
func New(w io.Writer, terminal bool) Reporter {
	return &writer{w: w, terminal: terminal, now: time.Now}
}

// plainInterval throttles Update lines when not on a terminal.
const plainInterval = 10 * time.Second

type writer struct {
	mu         sync.Mutex
	w          io.Writer
	terminal   bool
	now        func() time.Time
	step       string
	started    time.Time
	lastUpdate time.Time
}

func (p *writer) Start(step string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.step != "" {
		p.endLocked(true)
	}
	p.step, p.started, p.lastUpdate = step, p.now(), p.now()
	if p.terminal {
		fmt.Fprintf(p.w, " • %s …", step)
	} else {
		fmt.Fprintf(p.w, " • %s\n", step)
	}
}

func (p *writer) Update(detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.step == "" {
		return
	}
	now := p.now()
	elapsed := now.Sub(p.started).Round(time.Second)
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K • %s … %s (%s)", p.step, detail, elapsed)
		return
	}
	if now.Sub(p.lastUpdate) < plainInterval {
		return
	}
	p.lastUpdate = now
	fmt.Fprintf(p.w, "   %s (%s)\n", detail, elapsed)
}

func (p *writer) End(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLocked(ok)
}

func (p *writer) endLocked(ok bool) {
	if p.step == "" {
		return
	}
	mark := "✓"
	if !ok {
		mark = "✗"
	}
	d := p.now().Sub(p.started)
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K %s %s (%s)\n", mark, p.step, round(d))
	} else {
		fmt.Fprintf(p.w, " %s %s (%s)\n", mark, p.step, round(d))
	}
	p.step = ""
}

func round(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(10 * time.Millisecond)
	default:
		return d.Round(time.Second)
	}
}
