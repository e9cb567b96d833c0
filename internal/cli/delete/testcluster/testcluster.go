// Package testcluster is the command that deletes TestClusters and waits until their clusters are gone.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/lease"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
)

type options struct {
	namespace      string
	wait           time.Duration
	ignoreNotFound bool
}

// poll is how often the command checks whether deleted TestClusters are gone.
const poll = 10 * time.Millisecond

// NewCommand returns the delete testcluster command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:     "testcluster NAME...",
		Aliases: []string{"testclusters", "tc"},
		Short:   "End TestCluster leases and delete their clusters",
		Long: `End the leases of TestClusters on the ephemera server: delete each
TestCluster, and wait (up to --wait) until the server has deleted its cluster
and the TestCluster is gone. The kubeconfigs of those clusters stop working;
the files 'ephemera create testcluster' and 'ephemera run' wrote for them
under <state-dir>/kubeconfigs are removed (a --kubeconfig-out file is not).

A TestCluster that does not exist is an error, unless --ignore-not-found,
which makes the command safe in cleanup steps. With --wait 0 the command
returns as soon as the deletions are accepted; the server finishes them.`,
		Example: `  ephemera delete testcluster ci-abcde
  ephemera delete testcluster a b c -n team-a
  ephemera delete testcluster "$TC" --ignore-not-found   # in a CI cleanup step`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validate(opts); err != nil {
				return err
			}
			return run(cmd.Context(), e, opts, args)
		},
	}
	object.AddNamespaceFlag(cmd.Flags(), &opts.namespace)
	cmd.Flags().DurationVar(&opts.wait, "wait", 2*time.Minute, "how long to wait until the TestClusters and their clusters are gone (0: do not wait)")
	cmd.Flags().BoolVar(&opts.ignoreNotFound, "ignore-not-found", false, "treat TestClusters that do not exist as deleted")
	return cmd
}

func validate(opts *options) error {
	if opts.wait < 0 {
		return fmt.Errorf("--wait %s: must not be negative", opts.wait)
	}
	return object.ValidateNamespace(opts.namespace)
}

func run(ctx context.Context, e *env.Env, opts *options, names []string) error {
	c, err := e.ServerClient()
	if err != nil {
		return err
	}
	started := time.Now()
	var errs []error
	pending := map[string]*v1alpha1.TestCluster{}
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		tc := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: opts.namespace, Name: name}}
		err := c.Delete(ctx, tc)
		if err == nil || apierrors.IsNotFound(err) {
			// The lease ended (or had ended): its kubeconfig is of no use.
			if _, rerr := lease.RemoveKubeconfig(e.ServerLayout(), tc.Namespace, tc.Name); rerr != nil {
				errs = append(errs, rerr)
			}
		}
		switch {
		case apierrors.IsNotFound(err) && opts.ignoreNotFound:
			fmt.Fprintf(e.ErrOut, "TestCluster %s/%s does not exist; nothing to delete\n", opts.namespace, name)
		case err != nil:
			errs = append(errs, object.Error("delete", "TestCluster", client.ObjectKeyFromObject(tc), err))
		case opts.wait == 0:
			fmt.Fprintf(e.ErrOut, "Deleting TestCluster %s/%s; the server deletes its cluster\n", opts.namespace, name)
		default:
			pending[name] = tc
		}
	}
	if len(pending) > 0 {
		errs = append(errs, waitGone(ctx, e, c, pending, opts.wait, started))
	}
	return errors.Join(errs...)
}

// waitGone polls the deleted TestClusters until none is left, reporting each
// as it goes; the error names those left and what they wait for.
func waitGone(ctx context.Context, e *env.Env, c client.Client, pending map[string]*v1alpha1.TestCluster, timeout time.Duration, started time.Time) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		for name, tc := range pending {
			err := c.Get(ctx, client.ObjectKeyFromObject(tc), tc)
			switch {
			case apierrors.IsNotFound(err):
				delete(pending, name)
				fmt.Fprintf(e.ErrOut, "Deleted TestCluster %s/%s%s in %s\n", tc.Namespace, name, clusterNote(tc), time.Since(started).Round(time.Millisecond))
			case err != nil && ctx.Err() == nil:
				return object.Error("get", "TestCluster", client.ObjectKeyFromObject(tc), err)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		timer.Reset(poll)
		select {
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				return fmt.Errorf("interrupted while waiting; the server keeps deleting %s: %w", strings.Join(slices.Sorted(maps.Keys(pending)), ", "), err)
			}
			return leftError(pending, timeout)
		case <-timer.C:
		}
	}
}

func clusterNote(tc *v1alpha1.TestCluster) string {
	if tc.Spec.ClusterName == "" {
		return ""
	}
	return " and cluster " + tc.Spec.ClusterName
}

// leftError names the TestClusters not gone in time and what they wait for.
func leftError(pending map[string]*v1alpha1.TestCluster, timeout time.Duration) error {
	var lines []string
	for _, tc := range pending {
		lines = append(lines, fmt.Sprintf("TestCluster %s/%s is still there after %s: %s", tc.Namespace, tc.Name, timeout, stillThere(tc)))
	}
	slices.Sort(lines)
	return errors.New(strings.Join(lines, "\n"))
}

// stillThere says why a deleted TestCluster still exists.
func stillThere(tc *v1alpha1.TestCluster) string {
	what := "phase " + string(tc.Status.Phase)
	if tc.Status.Phase == "" {
		what = "no status"
	}
	if c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Message != "" {
		what += ", " + c.Message
	}
	if len(tc.Finalizers) > 0 {
		what += fmt.Sprintf("; waiting for finalizers %s (is 'ephemera serve' running?)", strings.Join(tc.Finalizers, ", "))
	}
	return what + "; the server keeps deleting it"
}
