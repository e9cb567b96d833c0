// Package testrun is the command that prints the log of a TestRun's test container.
package testrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
)

// pollInterval is how often --follow looks again at a run whose test
// container has not started.
const pollInterval = time.Second

type options struct {
	namespace string
	follow    bool
	cell      string
}

// deps are what run reads the world with and waits by.
type deps struct {
	src source
	// wait returns after the poll interval, or with ctx's error.
	wait func(ctx context.Context) error
}

// NewCommand returns the logs testrun command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:     "testrun NAME [-f] [--cell CELL]",
		Aliases: []string{"testruns", "tr"},
		Short:   "Print the log of a TestRun's test container",
		Long: `Print the log of a TestRun's test container: the output of the runner Job's
pod in the server's management plane. The log is printed to stdout as the
container wrote it; with -f it follows the log while the tests run, until the
container ends.

A run waits for its cluster before its Job starts. Without -f a run that has
no test container yet is an error; with -f the command waits for the pod to
exist and its container to start, saying on stderr what it waits for (like an
image that cannot be pulled: load it with 'ephemera load image ARCHIVE
--server'). When a Job retried, the newest pod's log is printed.

A matrix run has one child TestRun per cell. Without --cell every cell's log
is printed in the order of the cells, each after a line
  ==> cell NAME (run CHILD) <==
With -f each cell is followed to its end before the next. --cell NAME (or the
child run's name) prints only that cell's log; 'ephemera describe testrun
NAME' lists the cells.

The pod, and with it the log, goes with the Job; the server keeps a copy of
the log (test.log) in the run's artifacts directory on its host, see
'ephemera describe testrun NAME'.`,
		Example: `  ephemera logs testrun e2e-abcde
  ephemera logs testrun e2e-abcde -f
  ephemera logs tr e2e-abcde -n team-a > e2e.log

  # A matrix run: every cell, or one
  ephemera logs testrun compat
  ephemera logs testrun compat --cell default/v1.35.4`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("name one TestRun, like: ephemera logs testrun NAME (got %d names; 'ephemera get testruns' lists them)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := object.ValidateNamespace(opts.namespace); err != nil {
				return err
			}
			src, err := newServer(e)
			if err != nil {
				return err
			}
			return run(cmd.Context(), e, opts, args[0], deps{src: src, wait: sleep(pollInterval)})
		},
	}
	object.AddNamespaceFlag(cmd.Flags(), &opts.namespace)
	cmd.Flags().BoolVarP(&opts.follow, "follow", "f", false, "follow the log until the test container ends; wait for it to start")
	cmd.Flags().StringVar(&opts.cell, "cell", "", "of a matrix run, print only this cell's log, like default/v1.35.4")
	return cmd
}

// sleep returns a wait of d.
func sleep(d time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
}

func run(ctx context.Context, e *env.Env, opts *options, name string, d deps) error {
	l := &logger{deps: d, out: &lineWriter{w: e.Out}, errOut: e.ErrOut, follow: opts.follow}
	tr, err := d.src.TestRun(ctx, client.ObjectKey{Namespace: opts.namespace, Name: name})
	if err != nil {
		return err
	}
	if tr.Spec.Matrix == nil {
		if opts.cell != "" {
			return fmt.Errorf("--cell %s: TestRun %s is not a matrix run, it has no cells", opts.cell, id(tr))
		}
		return l.runLog(ctx, tr)
	}
	if tr, err = l.waitCells(ctx, tr); err != nil {
		return err
	}
	if opts.cell != "" {
		c, err := findCell(tr, opts.cell)
		if err != nil {
			return err
		}
		return l.cellLog(ctx, tr, c)
	}
	var errs []error
	for i, c := range tr.Status.Cells {
		if ctx.Err() != nil {
			return nil // interrupted while following: the user has seen enough
		}
		if i > 0 {
			l.out.separate()
		}
		fmt.Fprintf(l.out, "==> cell %s (run %s) <==\n", c.Name, c.Run)
		if err := l.cellLog(ctx, tr, c); err != nil {
			errs = append(errs, fmt.Errorf("cell %s: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// findCell returns the cell of a matrix run named name, by its cell name or
// its child run's name.
func findCell(tr *v1alpha1.TestRun, name string) (v1alpha1.TestRunCell, error) {
	names := make([]string, 0, len(tr.Status.Cells))
	for _, c := range tr.Status.Cells {
		if c.Name == name || c.Run == name {
			return c, nil
		}
		names = append(names, c.Name)
	}
	return v1alpha1.TestRunCell{}, fmt.Errorf("--cell %s: TestRun %s has no such cell; its cells are %s", name, id(tr), quoteJoin(names))
}

// logger prints the logs of runs.
type logger struct {
	deps
	out    *lineWriter
	errOut io.Writer
	follow bool
}

// cellLog prints the log of the child run of a cell of parent.
func (l *logger) cellLog(ctx context.Context, parent *v1alpha1.TestRun, c v1alpha1.TestRunCell) error {
	if c.Run == "" {
		return fmt.Errorf("cell %s of TestRun %s has no child TestRun yet; try again", c.Name, id(parent))
	}
	child, err := l.src.TestRun(ctx, client.ObjectKey{Namespace: parent.Namespace, Name: c.Run})
	if err != nil {
		return err
	}
	return l.runLog(ctx, child)
}

// waitCells returns tr once its matrix has cells; it waits for them with
// --follow.
func (l *logger) waitCells(ctx context.Context, tr *v1alpha1.TestRun) (*v1alpha1.TestRun, error) {
	shown := false
	for len(tr.Status.Cells) == 0 {
		if finished(tr) {
			return nil, fmt.Errorf("TestRun %s is %s and has no cells, so no log%s", id(tr), tr.Status.Phase, reason(tr))
		}
		msg := fmt.Sprintf("TestRun %s is a matrix run whose cells are not created yet", id(tr))
		if !l.follow {
			return nil, fmt.Errorf("%s; try again or use --follow", msg)
		}
		if !shown {
			fmt.Fprintf(l.errOut, "Waiting: %s\n", msg)
			shown = true
		}
		var err error
		if tr, err = l.next(ctx, tr, msg); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// runLog prints the log of a run that is not a matrix.
func (l *logger) runLog(ctx context.Context, tr *v1alpha1.TestRun) error {
	p, err := l.waitPod(ctx, tr)
	if err != nil {
		return err
	}
	rc, err := l.src.Log(ctx, p.namespace, p.name, p.container, l.follow)
	if apierrors.IsNotFound(err) {
		return goneError(tr)
	}
	if err != nil {
		return fmt.Errorf("read the log of pod %s/%s: %w", p.namespace, p.name, err)
	}
	defer rc.Close()
	if _, err := io.Copy(l.out, rc); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read the log of pod %s/%s: %w", p.namespace, p.name, err)
	}
	return nil
}

// waitPod returns the pod of a run's Job once its test container started;
// without --follow a run that has none yet is an error.
func (l *logger) waitPod(ctx context.Context, tr *v1alpha1.TestRun) (*pod, error) {
	shown := ""
	for {
		p, waiting, err := l.observe(ctx, tr)
		if err != nil {
			return nil, err
		}
		if p != nil {
			if shown != "" {
				fmt.Fprintf(l.errOut, "Container %s of pod %s started\n", p.container, p.name)
			}
			return p, nil
		}
		if !l.follow {
			return nil, fmt.Errorf("%s; try again or use --follow", waiting)
		}
		if waiting != shown {
			fmt.Fprintf(l.errOut, "Waiting: %s\n", waiting)
			shown = waiting
		}
		if tr, err = l.next(ctx, tr, waiting); err != nil {
			return nil, err
		}
	}
}

// next waits a poll interval and reads tr again.
func (l *logger) next(ctx context.Context, tr *v1alpha1.TestRun, waiting string) (*v1alpha1.TestRun, error) {
	if err := l.wait(ctx); err != nil {
		return nil, fmt.Errorf("interrupted while waiting (%s): %w", waiting, err)
	}
	next, err := l.src.TestRun(ctx, client.ObjectKeyFromObject(tr))
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("TestRun %s was deleted while waiting for its log: %w", id(tr), err)
	}
	return next, err
}

// lineWriter remembers whether the last line written ended.
type lineWriter struct {
	w     io.Writer
	wrote bool
	last  byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if n > 0 {
		w.wrote, w.last = true, p[n-1]
	}
	return n, err
}

// separate ends the last line, if it did not end, and writes an empty one:
// the gap between two cells' logs.
func (w *lineWriter) separate() {
	if !w.wrote {
		return
	}
	if w.last != '\n' {
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}
