// Package hold is the command that keeps a TestCluster's cluster past its ttl, to debug a failure.
package hold

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
	hold      time.Duration
}

// NewCommand returns the hold command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "hold NAME --for DURATION",
		Short: "Keep a TestCluster's cluster past its ttl, to debug a failure",
		Long: `Hold a TestCluster on the ephemera server: keep its cluster until --for from
now even if its ttl runs out, typically after a failed test run, to look
around with its kubeconfig. It sets spec.holdUntil and, like
'ephemera extend', the heartbeat annotation ` + v1alpha1.HeartbeatAnnotation + `.

Holds are capped: the server's --max-hold bounds how far past the later of
bind and heartbeat a hold reaches, and nothing goes past the TestCluster's
maxLifetime, counted from its creation. status.expiresAt ('ephemera get
testclusters NAME') shows the end the server settled on.

--for 0 releases the hold: the lease ends ttl after the heartbeat again.`,
		Example: `  ephemera hold ci-abcde --for 2h
  # In CI, keep the cluster of a failed run:
  make e2e || { ephemera hold "$TC" --for 4h; exit 1; }
  ephemera hold ci-abcde --for 0      # release it`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validate(opts); err != nil {
				return err
			}
			return run(cmd.Context(), e, opts, args[0])
		},
	}
	object.AddNamespaceFlag(cmd.Flags(), &opts.namespace)
	cmd.Flags().DurationVar(&opts.hold, "for", 0, "how long from now to keep the cluster, like 2h (0 releases the hold)")
	_ = cmd.MarkFlagRequired("for")
	return cmd
}

func validate(opts *options) error {
	if opts.hold < 0 {
		return fmt.Errorf("--for %s: must not be negative (0 releases the hold)", opts.hold)
	}
	return object.ValidateNamespace(opts.namespace)
}

func run(ctx context.Context, e *env.Env, opts *options, name string) error {
	c, err := e.ServerClient()
	if err != nil {
		return err
	}
	now := time.Now().Truncate(time.Second)
	body, err := patch(now, opts.hold)
	if err != nil {
		return err
	}
	tc := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: opts.namespace, Name: name}}
	if err := c.Patch(ctx, tc, client.RawPatch(types.MergePatchType, body)); err != nil {
		return object.Error("hold", "TestCluster", client.ObjectKeyFromObject(tc), err)
	}
	fmt.Fprintln(e.ErrOut, holdLine(tc, now, opts.hold))
	return nil
}

// patch is the merge patch of a hold for d from now, with a heartbeat; d 0
// removes spec.holdUntil.
func patch(now time.Time, d time.Duration) ([]byte, error) {
	var until *metav1.Time
	if d > 0 {
		until = &metav1.Time{Time: now.Add(d)}
	}
	return json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{v1alpha1.HeartbeatAnnotation: v1alpha1.HeartbeatValue(now)}},
		"spec":     map[string]any{"holdUntil": until},
	})
}

// holdLine says until when tc is held and what caps the hold.
func holdLine(tc *v1alpha1.TestCluster, now time.Time, d time.Duration) string {
	key := tc.Namespace + "/" + tc.Name
	if d == 0 {
		return fmt.Sprintf("Released the hold on TestCluster %s; its lease ends ttl after this heartbeat", key)
	}
	maxLifetime := tc.Spec.MaxLifetimeOrDefault()
	until, hardEnd := now.Add(d), tc.CreationTimestamp.Add(maxLifetime)
	s := fmt.Sprintf("Holding TestCluster %s until %s (%s)", key, until.Local().Format(time.RFC3339), printer.Relative(until, now))
	if until.After(hardEnd) {
		s += fmt.Sprintf(", but its maxLifetime (%s since creation) ends it at %s (%s)", maxLifetime, hardEnd.Local().Format(time.RFC3339), printer.Relative(hardEnd, now))
	}
	return s + ". Holds are capped by the server's --max-hold and by the TestCluster's maxLifetime; 'ephemera get testclusters " + tc.Name + " -n " + tc.Namespace + "' shows when it expires"
}
