package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	osexec "os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// waitDelay bounds how long Wait waits for output after cancellation.
const waitDelay = 2 * time.Second

// maxTail is how much of a failed command's output an error carries.
const maxTail = 4096

// Error is returned when an external command fails. It carries the argv and the
// end of the command's combined output so the user sees why it failed.
type Error struct {
	// Args is the command's argv.
	Args []string
	// Output is its combined stdout and stderr.
	Output string
	// Err is how it failed, usually an *os/exec.ExitError.
	Err error
}

// Error implements error: argv, cause and the end of the output.
func (e *Error) Error() string {
	msg := fmt.Sprintf("command %q: %v", strings.Join(e.Args, " "), e.Err)
	if out := strings.TrimSpace(e.Output); out != "" {
		msg += "\n" + Tail(out, maxTail)
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Cmd is one external command. Create it with Command; set Env, Dir, Stdin
// and Stream before calling Run or Output.
type Cmd struct {
	// Args is the full argv; Args[0] is the program.
	Args []string
	// Env, when non-nil, replaces the environment.
	Env []string
	// Dir is the working directory.
	Dir string
	// Stdin, when set, is the command's standard input.
	Stdin io.Reader
	// Stream, when set, receives the combined output line by line while the
	// command runs (the output is still captured for errors).
	Stream func(line string)

	ctx context.Context
}

// Command returns a Cmd that runs name with args, killed when ctx ends.
func Command(ctx context.Context, name string, args ...string) *Cmd {
	return &Cmd{Args: append([]string{name}, args...), ctx: ctx}
}

// Run runs the command and returns an *Error carrying its output on failure.
func (c *Cmd) Run() error {
	_, err := c.run(false)
	return err
}

// Output runs the command and returns its stdout. On failure the error carries
// stdout and stderr.
func (c *Cmd) Output() ([]byte, error) {
	return c.run(true)
}

func (c *Cmd) run(wantStdout bool) ([]byte, error) {
	cmd := osexec.CommandContext(c.ctx, c.Args[0], c.Args[1:]...)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.Stdin = c.Stdin
	// Cancelling kills the whole process group (go build's compilers
	// too), and Wait gives up on pipes held by stray children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	var combined, stdout bytes.Buffer
	sink := &lockedWriter{w: &combined}
	var w io.Writer = sink
	var lines *lineWriter
	if c.Stream != nil {
		lines = &lineWriter{fn: c.Stream}
		w = io.MultiWriter(sink, lines)
	}
	cmd.Stderr = w
	if wantStdout {
		cmd.Stdout = io.MultiWriter(&stdout, w)
	} else {
		cmd.Stdout = w
	}
	err := cmd.Run()
	if lines != nil {
		lines.flush()
	}
	if err != nil {
		if ctxErr := c.ctx.Err(); ctxErr != nil {
			err = errors.Join(ctxErr, err)
		}
		return stdout.Bytes(), &Error{Args: c.Args, Output: combined.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// Tail returns at most n bytes from the end of s, starting at a line boundary
// when one is near.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return "…\n" + s
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lineWriter calls fn for every complete line written to it.
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	fn  func(string)
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.fn(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.fn(string(l.buf))
		l.buf = nil
	}
}
