package exec_test

import (
	"context"
	"errors"
	"fmt"
	osexec "os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/internal/exec"
)

func sh(ctx context.Context, script string) *exec.Cmd {
	return exec.Command(ctx, "sh", "-c", script)
}

func asError(t *testing.T, err error) *exec.Error {
	t.Helper()
	var e *exec.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *exec.Error", err, err)
	}
	return e
}

func TestRun(t *testing.T) {
	t.Run("success", func(t *testing.T) {
		if err := sh(context.Background(), "echo hello; echo warn >&2").Run(); err != nil {
			t.Fatalf("Run: %v", err)
		}
	})

	t.Run("failure carries argv, exit status and output", func(t *testing.T) {
		script := "echo to-stdout; echo to-stderr >&2; exit 3"
		err := sh(context.Background(), script).Run()
		e := asError(t, err)
		if want := []string{"sh", "-c", script}; !reflect.DeepEqual(e.Args, want) {
			t.Errorf("Args = %q, want %q", e.Args, want)
		}
		for _, s := range []string{"to-stdout", "to-stderr"} {
			if !strings.Contains(e.Output, s) {
				t.Errorf("Output = %q, want it to contain %q", e.Output, s)
			}
		}
		msg := err.Error()
		for _, s := range []string{`"sh -c ` + script + `"`, "exit status 3", "to-stdout", "to-stderr"} {
			if !strings.Contains(msg, s) {
				t.Errorf("message %q does not contain %q", msg, s)
			}
		}
		var ee *osexec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("errors.As(*exec.ExitError) = %v, want exit code 3", ee)
		}
	})

	t.Run("message keeps only the tail of long output", func(t *testing.T) {
		// 2000 numbered lines, about 20 KB: far more than an error carries.
		err := sh(context.Background(), `i=0; while [ $i -lt 2000 ]; do echo "line-$i ....."; i=$((i+1)); done; exit 1`).Run()
		e := asError(t, err)
		if !strings.Contains(e.Output, "line-0 ") {
			t.Fatalf("Output lost the start; it should keep everything: %.100q", e.Output)
		}
		msg := err.Error()
		if strings.Contains(msg, "line-0 ") || !strings.Contains(msg, "line-1999 ") {
			t.Errorf("message should hold the end of the output only: %.200q…", msg)
		}
		if len(msg) > 5000 {
			t.Errorf("message is %d bytes, want about 4 KB at most", len(msg))
		}
	})

	t.Run("no output, no trailing newline", func(t *testing.T) {
		err := sh(context.Background(), "exit 4").Run()
		if msg := err.Error(); msg != `command "sh -c exit 4": exit status 4` {
			t.Errorf("message = %q", msg)
		}
	})

	t.Run("missing program", func(t *testing.T) {
		err := exec.Command(context.Background(), "/nonexistent/ephemera-test-prog").Run()
		e := asError(t, err)
		if e.Args[0] != "/nonexistent/ephemera-test-prog" || !strings.Contains(err.Error(), "/nonexistent/ephemera-test-prog") {
			t.Errorf("error does not name the program: %v", err)
		}
	})

	t.Run("env and dir", func(t *testing.T) {
		dir := t.TempDir()
		c := sh(context.Background(), `printf '%s|%s|%s' "$EPHEMERA_X" "${HOME-unset}" "$(pwd -P)"`)
		c.Env = []string{"EPHEMERA_X=42"}
		c.Dir = dir
		out, err := c.Output()
		if err != nil {
			t.Fatal(err)
		}
		resolved, err := filepath.EvalSymlinks(dir)
		if err != nil {
			t.Fatal(err)
		}
		// Env replaces the environment: HOME is not inherited.
		if want := "42|unset|" + resolved; string(out) != want {
			t.Errorf("output = %q, want %q", out, want)
		}
	})
}

func TestOutput(t *testing.T) {
	tests := []struct {
		name        string
		script      string
		wantOut     string
		wantErr     bool
		errContains []string
	}{
		{name: "stdout only", script: "echo out; echo err >&2", wantOut: "out\n"},
		{name: "empty", script: "true", wantOut: ""},
		{name: "failure carries stderr", script: "echo partial; echo boom >&2; exit 2", wantOut: "partial\n", wantErr: true,
			errContains: []string{"boom", "partial"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := sh(context.Background(), tt.script).Output()
			if string(out) != tt.wantOut {
				t.Errorf("out = %q, want %q", out, tt.wantOut)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				return
			}
			e := asError(t, err)
			if !strings.Contains(err.Error(), "exit status 2") {
				t.Errorf("error %q does not give the exit status", err)
			}
			for _, s := range tt.errContains {
				if !strings.Contains(e.Output, s) || !strings.Contains(err.Error(), s) {
					t.Errorf("error %q (Output %q) does not contain %q", err, e.Output, s)
				}
			}
		})
	}
}

func TestStream(t *testing.T) {
	tests := []struct {
		name   string
		script string
		fails  bool
		want   []string
	}{
		{"lines", `printf 'a\nb\n'`, false, []string{"a", "b"}},
		{"final line without newline", `printf 'a\n\nlast'`, false, []string{"a", "", "last"}},
		{"no output", `true`, false, nil},
		{"line written in pieces", `printf 'hel'; sleep 0.05; printf 'lo\nwor'; sleep 0.05; printf 'ld\n'`, false, []string{"hello", "world"}},
		// stdout and stderr race each other: lines are compared sorted.
		{"stdout and stderr of a failure", `echo out; echo err >&2; exit 1`, true, []string{"err", "out"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			c := sh(context.Background(), tt.script)
			c.Stream = func(line string) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, line)
			}
			err := c.Run()
			if tt.fails {
				_ = asError(t, err)
				slices.Sort(got)
			} else if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("output is still captured for errors", func(t *testing.T) {
		c := sh(context.Background(), `echo streamed; exit 1`)
		c.Stream = func(string) {}
		if e := asError(t, c.Run()); !strings.Contains(e.Output, "streamed") {
			t.Errorf("Output = %q, want it to contain the streamed line", e.Output)
		}
	})
}

func TestContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"canceled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		for _, output := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/output=%v", tt.name, output), func(t *testing.T) {
				ctx, cancel := tt.ctx()
				defer cancel()
				c := exec.Command(ctx, "sleep", "10")
				start := time.Now()
				var err error
				if output {
					_, err = c.Output()
				} else {
					err = c.Run()
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Fatalf("command ran %s: not killed when the context ended", d)
				}
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want it to wrap %v", err, tt.want)
				}
				_ = asError(t, err)
				var ee *osexec.ExitError
				if !errors.As(err, &ee) {
					t.Errorf("err = %v, want it to wrap the process's exit error too", err)
				}
			})
		}
	}

	t.Run("context already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := exec.Command(ctx, "true").Run()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		_ = asError(t, err)
	})
}

func TestTail(t *testing.T) {
	tests := []struct {
		name string
		s    string
		n    int
		want string
	}{
		{"empty", "", 10, ""},
		{"shorter than n", "abc\ndef", 10, "abc\ndef"},
		{"exactly n", "abc\ndef", 7, "abc\ndef"},
		{"starts at the next line", "line1\nline2\nline3\n", 10, "…\nline3\n"},
		{"keeps whole last lines", "one\ntwo\nthree\nfour", 12, "…\nthree\nfour"},
		{"cut exactly at a line start", "aaaa\nbbbb", 5, "…\nbbbb"},
		{"no newline", "abcdefghij", 4, "…\nghij"},
		{"only a final newline", "aaaaaaaa\n", 4, "…\naaa\n"},
		{"multi-byte text", "ääää\nöö", 5, "…\nöö"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := exec.Tail(tt.s, tt.n)
			if got != tt.want {
				t.Fatalf("Tail(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
			}
			body := strings.TrimPrefix(got, "…\n")
			if !strings.HasSuffix(tt.s, body) || len(body) > tt.n {
				t.Fatalf("Tail(%q, %d) = %q: not the end of s within n bytes", tt.s, tt.n, got)
			}
		})
	}
}
