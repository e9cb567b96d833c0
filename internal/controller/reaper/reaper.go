// Package reaper deletes clusters this server created that nothing owns
// any more: the TestCluster whose UID they record is gone, and they belong
// to no live pool. It runs when the server starts and then periodically.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/metrics"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/failpoint"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// DefaultInterval is how often the reaper sweeps.
const DefaultInterval = time.Minute

// Reaper sweeps a provider for orphaned clusters.
type Reaper struct {
	// Reader reads TestClusters and pools from the API server directly.
	Reader client.Reader
	// Provisioner deletes clusters (stopping any create under way).
	Provisioner *provision.Provisioner
	// Server is this server instance's name; only clusters labelled with
	// it are looked at.
	Server string
	// Interval between sweeps.
	Interval time.Duration
	// Log receives what is reaped.
	Log logr.Logger
}

// Start implements manager.Runnable: one sweep once the provisioner knows
// the clusters of an earlier server, then one per interval.
func (r *Reaper) Start(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	for {
		if r.Provisioner.Loaded() {
			if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
				r.Log.Error(err, "Sweeping for orphaned clusters")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the
// leader reaps.
func (r *Reaper) NeedLeaderElection() bool { return true }

// Sweep deletes every orphan once and returns their names. A delete that
// fails does not stop the sweep: the others are deleted, the failures
// returned together, and tried again next sweep.
func (r *Reaper) Sweep(ctx context.Context) ([]string, error) {
	// Clusters first, owners second: a cluster is always labelled with its
	// TestCluster or pool before it is created, so an owner created after
	// the first list cannot be missed.
	clusters, err := r.Provisioner.Provider().List(ctx)
	if err != nil {
		return nil, err
	}
	var tcs v1alpha1.TestClusterList
	if err := r.Reader.List(ctx, &tcs); err != nil {
		return nil, err
	}
	var pools v1alpha1.ClusterPoolList
	if err := r.Reader.List(ctx, &pools); err != nil {
		return nil, err
	}
	owners := map[types.UID]bool{}
	for _, tc := range tcs.Items {
		owners[tc.UID] = true
	}
	for _, p := range pools.Items {
		if p.DeletionTimestamp.IsZero() {
			owners[p.UID] = true
		}
	}
	var reaped []string
	var errs []error
	for _, c := range clusters {
		if c.Labels[provision.LabelServer] != r.Server || owned(c, owners) {
			continue
		}
		if c.Phase == provider.PhaseDeleting || r.Provisioner.Releasing(c.Name) {
			continue // on its way out already
		}
		r.Log.Info("Reaping orphaned cluster", "cluster", c.Name, "phase", c.Phase, "labels", c.Labels)
		if err := r.Provisioner.Delete(ctx, c.Name); err != nil {
			errs = append(errs, fmt.Errorf("reap cluster %q: %w", c.Name, err))
			continue
		}
		failpoint.Inject(failpoint.ReaperAfterDelete)
		metrics.Reaped.WithLabelValues(c.Provider).Inc()
		reaped = append(reaped, c.Name)
	}
	return reaped, errors.Join(errs...)
}

// owned says whether a live TestCluster (by the UID the cluster records) or
// a live pool owns the cluster.
func owned(c provider.Cluster, owners map[types.UID]bool) bool {
	if uid := c.Labels[provision.LabelTestClusterUID]; uid != "" && owners[types.UID(uid)] {
		return true
	}
	uid := c.Labels[provision.LabelPoolUID]
	return uid != "" && owners[types.UID(uid)] && c.Labels[provision.LabelTestClusterUID] == ""
}
