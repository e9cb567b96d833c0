// Package testrun is the command that shows a TestRun in full, for people.
package testrun

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/get/testruns"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
)

type options struct {
	namespace string
}

// NewCommand returns the describe testrun command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:     "testrun NAME",
		Aliases: []string{"testruns", "tr"},
		Short:   "Show a TestRun in full: its cluster, runner, results, cells, conditions and events",
		Long: `Show a TestRun of the ephemera server in full, for people: what it runs
(cluster source, runner image and command, timeout, what happens to the
cluster on failure), where it ran (TestCluster, Kubernetes version, Job), how
it went (start, completion, duration, exit code, the JUnit results and the
names of the failing tests), the cells of a matrix run, where its artifacts
are kept on the server's host, how long a failed run's cluster is held,
which commit statuses were posted, its conditions, and the events recorded
about it.

The Complete condition's reason says how a run ended: Passed, TestsFailed,
TimedOut, ClusterError or RunnerError; its message says why. For a
script, use 'ephemera get testrun NAME -o json' instead.`,
		Example: `  ephemera describe testrun e2e-abcde
  ephemera describe tr compat -n team-a`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("name one TestRun, like: ephemera describe testrun NAME (got %d names; 'ephemera get testruns' lists them)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := object.ValidateNamespace(opts.namespace); err != nil {
				return err
			}
			c, err := e.ServerClient()
			if err != nil {
				return err
			}
			return run(cmd.Context(), e, c, client.ObjectKey{Namespace: opts.namespace, Name: args[0]})
		},
	}
	object.AddNamespaceFlag(cmd.Flags(), &opts.namespace)
	return cmd
}

func run(ctx context.Context, e *env.Env, c client.Reader, key client.ObjectKey) error {
	tr, err := testruns.Get(ctx, c, key)
	if err != nil {
		return err
	}
	events, err := listEvents(ctx, c, tr)
	if err != nil {
		// The TestRun is worth showing without its events.
		fmt.Fprintf(e.ErrOut, "Cannot list the events of TestRun %s/%s: %v\n", tr.Namespace, tr.Name, err)
	}
	return describe(e.Out, tr, events, time.Now())
}

// listEvents returns the events recorded about tr.
func listEvents(ctx context.Context, c client.Reader, tr *v1alpha1.TestRun) ([]corev1.Event, error) {
	var l corev1.EventList
	fields := client.MatchingFields{"involvedObject.name": tr.Name}
	if tr.UID != "" {
		fields["involvedObject.uid"] = string(tr.UID)
	}
	if err := c.List(ctx, &l, client.InNamespace(tr.Namespace), fields); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// describe writes tr, and the events about it, for people, as of now.
func describe(w io.Writer, tr *v1alpha1.TestRun, events []corev1.Event, now time.Time) error {
	d := &describer{now: now}
	d.testRun(tr)
	d.events(events)
	_, err := io.WriteString(w, d.b.String())
	return err
}
