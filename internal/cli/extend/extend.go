// Package extend is the command that renews a TestCluster's lease: a heartbeat, optionally with a new ttl.
package extend

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

type options struct {
	namespace string
	ttl       time.Duration
}

// NewCommand returns the extend command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "extend NAME [--ttl DURATION]",
		Short: "Renew a TestCluster's lease (a heartbeat), optionally with a new ttl",
		Long: `Renew the lease of a TestCluster on the ephemera server. A lease ends ttl
after the cluster was bound or after the last heartbeat, whichever is later;
this command is a heartbeat: it sets the annotation ` + v1alpha1.HeartbeatAnnotation + `
to now, so the lease now ends ttl from now. With --ttl it also changes the
TestCluster's ttl (spec.ttl) for this and later heartbeats.

A long job can run it periodically to keep its cluster while it works, with
a short ttl so that an abandoned cluster is soon returned. No lease goes past
the TestCluster's maxLifetime, counted from its creation. To keep a cluster
for debugging after a failure, use 'ephemera hold' instead.`,
		Example: `  ephemera extend ci-abcde --ttl 1h
  ephemera extend ci-abcde            # heartbeat: keep the current ttl
  # Heartbeat every 5 minutes while the tests run:
  while sleep 300; do ephemera extend "$TC" --ttl 15m; done &`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validate(opts); err != nil {
				return err
			}
			return run(cmd.Context(), e, opts, args[0])
		},
	}
	object.AddNamespaceFlag(cmd.Flags(), &opts.namespace)
	cmd.Flags().DurationVar(&opts.ttl, "ttl", 0, "new lease length from now, like 30m or 2h (default: keep the TestCluster's ttl)")
	return cmd
}

func validate(opts *options) error {
	if opts.ttl != 0 && opts.ttl < time.Second {
		return fmt.Errorf("--ttl %s: must be at least 1s, like 30m or 2h", opts.ttl)
	}
	return object.ValidateNamespace(opts.namespace)
}

func run(ctx context.Context, e *env.Env, opts *options, name string) error {
	c, err := e.ServerClient()
	if err != nil {
		return err
	}
	now := time.Now().Truncate(time.Second)
	body, err := patch(now, opts.ttl)
	if err != nil {
		return err
	}
	tc := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: opts.namespace, Name: name}}
	if err := c.Patch(ctx, tc, client.RawPatch(types.MergePatchType, body)); err != nil {
		return object.Error("extend", "TestCluster", client.ObjectKeyFromObject(tc), err)
	}
	fmt.Fprintln(e.ErrOut, leaseLine(tc, now))
	return nil
}

// patch is the merge patch of a heartbeat at now, with a new ttl unless 0.
func patch(now time.Time, ttl time.Duration) ([]byte, error) {
	p := map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{v1alpha1.HeartbeatAnnotation: v1alpha1.HeartbeatValue(now)}},
	}
	if ttl > 0 {
		p["spec"] = map[string]any{"ttl": metav1.Duration{Duration: ttl}}
	}
	return json.Marshal(p)
}

// leaseLine says when the lease of tc, after a heartbeat at now, ends: ttl
// from now, capped by maxLifetime, unless a hold keeps it longer.
func leaseLine(tc *v1alpha1.TestCluster, now time.Time) string {
	ttl, maxLifetime := tc.Spec.TTLOrDefault(), tc.Spec.MaxLifetimeOrDefault()
	end, hardEnd := now.Add(ttl), tc.CreationTimestamp.Add(maxLifetime)
	s := fmt.Sprintf("Lease of TestCluster %s/%s renewed: it ends %s (%s, ttl %s)", tc.Namespace, tc.Name, end.Local().Format(time.RFC3339), printer.Relative(end, now), ttl)
	if end.After(hardEnd) {
		s = fmt.Sprintf("Lease of TestCluster %s/%s renewed, but it ends %s (%s) at the latest: its maxLifetime %s since creation", tc.Namespace, tc.Name, hardEnd.Local().Format(time.RFC3339), printer.Relative(hardEnd, now), maxLifetime)
	}
	if h := tc.Spec.HoldUntil; h != nil && h.After(end) && h.Time.Before(hardEnd) {
		s += fmt.Sprintf("; it is held until %s (%s)", h.Local().Format(time.RFC3339), printer.Relative(h.Time, now))
	}
	return s
}
