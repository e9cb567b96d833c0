// Package reaper deletes clusters this server created that nothing owns
// any more: no TestCluster is bound to them and they belong to no live
// pool. It runs when the server starts and then periodically.
package reaper

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/metrics"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
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

// Start implements manager.Runnable: one sweep now, then one per interval.
func (r *Reaper) Start(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	for {
		if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
			r.Log.Error(err, "Sweeping for orphaned clusters")
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

// Sweep deletes every orphan once and returns their names.
func (r *Reaper) Sweep(ctx context.Context) ([]string, error) {
	// Clusters first, owners second: a cluster is always bound or labelled
	// with its pool before it is created, so an owner created after the
	// first list cannot be missed.
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
	bound := map[string]bool{}
	for _, tc := range tcs.Items {
		bound[tc.Spec.ClusterName] = true
	}
	livePools := map[string]bool{}
	for _, p := range pools.Items {
		if p.DeletionTimestamp.IsZero() {
			livePools[string(p.UID)] = true
		}
	}
	var reaped []string
	for _, c := range clusters {
		if c.Labels[provision.LabelServer] != r.Server || bound[c.Name] || livePools[c.Labels[provision.LabelPoolUID]] {
			continue
		}
		r.Log.Info("Reaping orphaned cluster", "cluster", c.Name, "phase", c.Phase, "labels", c.Labels)
		if err := r.Provisioner.Delete(ctx, c.Name); err != nil {
			return reaped, err
		}
		metrics.Reaped.WithLabelValues(c.Provider).Inc()
		reaped = append(reaped, c.Name)
	}
	return reaped, nil
}
