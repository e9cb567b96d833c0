// Package admission is the server's fair queue: one reconciler, for all
// TestClusters at once, binds waiting claims to Ready pool clusters,
// admits template requests within the capacity budget, keeps pools at
// minReady within maxSize, and publishes queue positions.
//
// Every decision is made by this single reconciler from a fresh list of
// TestClusters read from the API server (not the cache), so a cluster is
// never bound twice and the order is global.
package admission

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/metrics"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/failpoint"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// Request is the one key this reconciler is ever asked to reconcile.
var Request = reconcile.Request{NamespacedName: types.NamespacedName{Name: "queue"}}

// Queue names for clusters admitted against the capacity budget.
const capacityQueue = "capacity"

// resync bounds how long the queue goes without a pass.
const resync = 15 * time.Second

// parallelWrites bounds the API writes of one pass that run at once.
const parallelWrites = 16

// failureBackoff keeps a pool from retrying a failing create at once.
const failureBackoff = 10 * time.Second

// Reconciler runs the queue.
type Reconciler struct {
	// Client reads pools and templates through the cache and writes.
	Client client.Client
	// Reader reads TestClusters from the API server directly.
	Reader client.Reader
	// Provisioner builds and deletes clusters.
	Provisioner *provision.Provisioner
	// Server is this server instance's name, recorded on its clusters.
	Server string
	// MaxClusters is the capacity budget: clusters of this server, in any
	// state, at once.
	MaxClusters int
	// MaxPerNamespace, when positive, bounds the bound or building
	// TestClusters of one namespace; more wait.
	MaxPerNamespace int
	// OwnerLabel is the TestCluster label whose value is the owner in the
	// cluster-seconds metric.
	OwnerLabel string
	// Now is the clock.
	Now func() time.Time

	mu          sync.Mutex
	queuedSince map[types.UID]time.Time
	accounted   map[types.UID]time.Time
	failedAt    map[string]time.Time // pool key → last failed create
	failedErr   map[string]error     // pool key → its error
	failures    map[string]int       // pool key → failed creates in a row
	invalid     map[string]string    // pool key → template version and pool generation an invalid spec was seen with
	pools       map[string]bool      // pool keys with metric series
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	if !r.Provisioner.Loaded() {
		// Until the clusters of an earlier server are known, every
		// decision would be made on a partial view.
		return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	r.init()
	now := r.Now()
	var tcs v1alpha1.TestClusterList
	if err := r.Reader.List(ctx, &tcs); err != nil {
		return reconcile.Result{}, err
	}
	var pools v1alpha1.ClusterPoolList
	if err := r.Client.List(ctx, &pools); err != nil {
		return reconcile.Result{}, err
	}
	r.mu.Lock()
	in := Input{
		TestClusters: tcs.Items, Pools: pools.Items, Clusters: r.Provisioner.Snapshot(),
		MaxClusters: r.MaxClusters, MaxPerNamespace: r.MaxPerNamespace, FailedAt: maps.Clone(r.failedAt), Failures: maps.Clone(r.failures), Now: now,
	}
	r.mu.Unlock()
	plan := Decide(in)
	r.remember(plan, in, now)

	logger := log.FromContext(ctx)
	for _, name := range plan.Release {
		if !r.Provisioner.Releasing(name) {
			logger.Info("Deleting a cluster nobody may claim", "cluster", name)
		}
		r.Provisioner.Release(name)
	}
	// Decided in order, in memory; now written: queues in parallel, each
	// queue's binds one after the other, in its order, so that nobody sees
	// a claim bound before one ahead of it. A write that fails leaves its
	// TestCluster waiting and its cluster free, and holds back the rest
	// of its queue: the next pass sees them all.
	var errs []error
	var g errgroup.Group
	g.SetLimit(parallelWrites)
	for _, binds := range bindsByQueue(plan.Binds) {
		g.Go(func() error {
			for _, b := range binds {
				if err := r.bind(ctx, b, now); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for _, p := range plan.Positions {
		r.markQueued(p.TestCluster, now)
		g.Go(func() error {
			tc := p.TestCluster
			base := tc.DeepCopy()
			tc.Status.QueuePosition = p.Position
			return client.IgnoreNotFound(r.Client.Status().Patch(ctx, tc, client.MergeFrom(base)))
		})
	}
	if err := g.Wait(); err != nil {
		errs = append(errs, err)
	}
	for q, n := range plan.QueueLength {
		metrics.QueueLength.WithLabelValues(q).Set(float64(n))
	}
	for _, pk := range sortedKeys(plan.Pools) {
		if err := r.reconcilePool(ctx, plan.Pools[pk]); err != nil {
			errs = append(errs, err)
		}
	}
	r.account(tcs.Items, now)
	if len(errs) > 0 {
		// Conflicts only: the cache was behind a write; the next pass,
		// shortly, reads it again. Anything else is an error.
		if !slices.ContainsFunc(errs, func(err error) bool { return !apierrors.IsConflict(err) }) {
			return reconcile.Result{RequeueAfter: 50 * time.Millisecond}, nil
		}
		return reconcile.Result{}, errs[0]
	}
	if plan.Publishing > 0 {
		return reconcile.Result{RequeueAfter: 50 * time.Millisecond}, nil
	}
	return reconcile.Result{RequeueAfter: resync}, nil
}

// bindsByQueue splits binds by queue, keeping their order within each.
func bindsByQueue(binds []Bind) [][]Bind {
	var out [][]Bind
	at := map[string]int{}
	for _, b := range binds {
		i, ok := at[b.Queue]
		if !ok {
			i = len(out)
			at[b.Queue] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], b)
	}
	return out
}

func (r *Reconciler) init() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queuedSince == nil {
		r.queuedSince, r.accounted = map[types.UID]time.Time{}, map[types.UID]time.Time{}
		r.failedAt, r.failedErr, r.pools, r.invalid = map[string]time.Time{}, map[string]error{}, map[string]bool{}, map[string]string{}
		r.failures = map[string]int{}
	}
}

// remember records the failures of a pass and forgets what belongs to
// TestClusters and pools that are gone; the metric series of a deleted
// pool go with it.
func (r *Reconciler) remember(plan Plan, in Input, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pk := range plan.Recovered {
		delete(r.failures, pk)
	}
	for pk, err := range plan.Failed {
		r.failedAt[pk], r.failedErr[pk] = now, err
		r.failures[pk]++
	}
	live := map[types.UID]bool{}
	for _, tc := range in.TestClusters {
		live[tc.UID] = true
	}
	for uid := range r.queuedSince {
		if !live[uid] {
			delete(r.queuedSince, uid)
		}
	}
	for pk := range r.failedAt {
		if _, ok := plan.Pools[pk]; !ok {
			delete(r.failedAt, pk)
			delete(r.failedErr, pk)
			delete(r.failures, pk)
			delete(r.invalid, pk)
		}
	}
	for pk := range r.pools {
		if _, ok := plan.Pools[pk]; !ok {
			delete(r.pools, pk)
			ns, name, _ := strings.Cut(pk, "/")
			metrics.PoolReady.DeleteLabelValues(ns, name)
			metrics.PoolHits.DeleteLabelValues(ns, name)
			metrics.PoolMisses.DeleteLabelValues(ns, name)
			metrics.QueueLength.DeleteLabelValues("pool:" + pk)
		}
	}
	for pk := range plan.Pools {
		r.pools[pk] = true
	}
}

// bind binds a TestCluster: a pool cluster first records the claim (so
// that only this TestCluster can ever get its kubeconfig or delete it),
// then spec.clusterName is set. It needs no optimistic lock: the API
// server refuses to change a clusterName once set (a CEL rule), and only
// this reconciler hands out clusters, one pass at a time.
func (r *Reconciler) bind(ctx context.Context, b Bind, now time.Time) error {
	tc := b.TestCluster
	cluster := b.Cluster
	if cluster == "" {
		name, err := r.newName(ctx, tc.Name)
		if err != nil {
			return err
		}
		cluster = name
	} else if err := r.Provisioner.Claim(ctx, cluster, tc); err != nil {
		if errors.Is(err, provision.ErrNotUsable) {
			// Lost meanwhile: the next pass releases it and binds another.
			log.FromContext(ctx).Info("Not binding a cluster that stopped working", "testcluster", klog.KObj(tc), "cluster", cluster, "reason", err.Error())
			return nil
		}
		return err
	}
	if b.Cluster != "" {
		failpoint.Inject(failpoint.AdmissionAfterClaim)
	}
	base := tc.DeepCopy()
	tc.Spec.ClusterName = cluster
	if err := r.Client.Patch(ctx, tc, client.MergeFrom(base)); err != nil {
		tc.Spec.ClusterName = ""
		if apierrors.IsNotFound(err) {
			return nil // a recorded claim of a gone TestCluster is released next pass
		}
		return fmt.Errorf("bind %s to cluster %q: %w", klog.KObj(tc), cluster, err)
	}
	log.FromContext(ctx).Info("Bound TestCluster", "testcluster", klog.KObj(tc), "cluster", cluster, "queue", b.Queue)
	r.mu.Lock()
	since, waited := r.queuedSince[tc.UID]
	delete(r.queuedSince, tc.UID)
	r.mu.Unlock()
	if waited {
		metrics.QueueWait.WithLabelValues(b.Queue).Observe(now.Sub(since).Seconds())
	}
	if tc.Spec.PoolRef != "" {
		if waited {
			metrics.PoolMisses.WithLabelValues(tc.Namespace, tc.Spec.PoolRef).Inc()
		} else {
			metrics.PoolHits.WithLabelValues(tc.Namespace, tc.Spec.PoolRef).Inc()
		}
	}
	return nil
}

func (r *Reconciler) markQueued(tc *v1alpha1.TestCluster, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.queuedSince[tc.UID]; !ok {
		r.queuedSince[tc.UID] = now
	}
}

// reconcilePool carries out what the pass decided for one pool (clusters to
// shed and to create) and writes the pool's status.
func (r *Reconciler) reconcilePool(ctx context.Context, dp *Pool) error {
	p := dp.Pool
	base := p.DeepCopy()
	logger := log.FromContext(ctx)
	for _, name := range dp.Shed {
		logger.Info("Deleting pool cluster above maxSize", "pool", klog.KObj(p), "cluster", name)
		r.Provisioner.Release(name)
	}
	var problem, invalid string
	pk := key(p.Namespace, p.Name)
	r.mu.Lock()
	lastErr, failures := r.failedErr[pk], r.failures[pk]
	if errors.Is(lastErr, provider.ErrInvalidSpec) && dp.Backoff {
		r.invalid[pk] = "" // seen now; its versions are recorded below
	}
	invalidAt, wasInvalid := r.invalid[pk]
	r.mu.Unlock()
	if dp.Create > 0 || wasInvalid {
		tmpl := &v1alpha1.ClusterTemplate{}
		version, shared := "", ""
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.TemplateRef}, tmpl)
		switch {
		case apierrors.IsNotFound(err):
			problem = fmt.Sprintf("ClusterTemplate %q not found in namespace %q: create it", p.Spec.TemplateRef, p.Namespace)
		case err != nil:
			return err
		default:
			version = fmt.Sprintf("%s/%d", tmpl.ResourceVersion, p.Generation)
			shared = sharedHostPort(p, tmpl)
		}
		// An invalid spec is terminal: nothing is built from the same
		// template and pool until one of them changes.
		switch {
		case wasInvalid && (invalidAt == "" || invalidAt == version):
			r.mu.Lock()
			r.invalid[pk] = version
			r.mu.Unlock()
			invalid = "the template cannot be built; fix the ClusterTemplate or the pool: " + lastErr.Error()
		case wasInvalid:
			r.mu.Lock()
			delete(r.invalid, pk)
			r.mu.Unlock()
		}
		if shared != "" {
			invalid = shared
		}
		if problem != "" || invalid != "" {
			dp.Provisioning -= dp.Create
			dp.Size -= dp.Create
			dp.Create = 0
		}
		for range dp.Create {
			name, err := r.newName(ctx, p.Name)
			if err != nil {
				return err
			}
			logger.Info("Creating pool cluster", "pool", klog.KObj(p), "cluster", name)
			r.Provisioner.Ensure(name, tmpl.Spec, provision.PoolLabels(r.Server, p), provision.AddonInputs{Namespace: p.Namespace, Labels: p.Labels})
			failpoint.Inject(failpoint.AdmissionPoolCreate)
		}
	}
	p.Status.ObservedGeneration = p.Generation
	p.Status.Size, p.Status.Ready, p.Status.Provisioning = int32(dp.Size), int32(dp.Ready), int32(dp.Provisioning)
	p.Status.Claimed, p.Status.Queued = int32(dp.Claimed), int32(dp.Waiting)
	metrics.PoolReady.WithLabelValues(p.Namespace, p.Name).Set(float64(dp.Ready))
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReady,
		Message: fmt.Sprintf("%d Ready clusters, minReady %d", dp.Ready, p.Spec.MinReadyOrDefault()), ObservedGeneration: p.Generation}
	switch {
	case problem != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonTemplateNotFound, problem
	case invalid != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, invalid
	case dp.Backoff:
		cond.Status = metav1.ConditionFalse
		cond.Reason, cond.Message = failureCondition(lastErr, failures, dp.RetryIn)
	case int32(dp.Ready) < p.Spec.MinReadyOrDefault():
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonBelowMinReady
		if dp.BudgetUsedUp {
			cond.Message += fmt.Sprintf("; the server's budget of %d clusters is used up", r.MaxClusters)
		}
	}
	cond.Message = truncate(cond.Message, 2048)
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	if equality.Semantic.DeepEqual(base.Status, p.Status) {
		return nil
	}
	// An update, not a patch: zero counts must be written too. A conflict
	// (a stale cache) is retried by the next pass.
	return client.IgnoreNotFound(r.Client.Status().Update(ctx, p))
}

// sharedHostPort says why the pool p cannot be built from tmpl: the
// template maps a fixed host port, which only one cluster at a time can
// bind, and the pool may hold more than one. It is empty when the pool can
// be built.
func sharedHostPort(p *v1alpha1.ClusterPool, tmpl *v1alpha1.ClusterTemplate) string {
	maxSize := p.Spec.MaxSizeOrDefault()
	if maxSize <= 1 {
		return ""
	}
	for i, pm := range tmpl.Spec.Network.Ports {
		if pm.HostPort != 0 {
			return fmt.Sprintf("ClusterTemplate %q maps the fixed host port %d (spec.network.ports[%d].hostPort), which the pool's clusters (maxSize %d) cannot share: "+
				"set hostPort 0 to give each cluster a free port, shown in its TestCluster's status.ports (or set the pool's maxSize to 1)",
				tmpl.Name, pm.HostPort, i, maxSize)
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// account adds the time since the last pass to the cluster-seconds of
// every Ready TestCluster.
func (r *Reconciler) account(tcs []v1alpha1.TestCluster, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	live := map[types.UID]bool{}
	for _, tc := range tcs {
		if tc.Status.Phase != v1alpha1.TestClusterReady {
			continue
		}
		live[tc.UID] = true
		if last, ok := r.accounted[tc.UID]; ok {
			metrics.ClusterSeconds.WithLabelValues(tc.Namespace, tc.Labels[r.OwnerLabel]).Add(now.Sub(last).Seconds())
		}
		r.accounted[tc.UID] = now
	}
	for uid := range r.accounted {
		if !live[uid] {
			delete(r.accounted, uid)
		}
	}
	counts := map[[3]string]float64{}
	for _, tc := range tcs {
		counts[[3]string{string(cmp.Or(tc.Status.Phase, v1alpha1.TestClusterQueued)), tc.Spec.PoolRef, r.Provisioner.Provider().Name()}]++
	}
	metrics.TestClusters.Reset()
	for k, n := range counts {
		metrics.TestClusters.WithLabelValues(k[0], k[1], k[2]).Set(n)
	}
}

// newName returns a free cluster name: the prefix, cut to fit, and a
// random suffix.
func (r *Reconciler) newName(ctx context.Context, prefix string) (string, error) {
	prefix = trimPrefix(prefix)
	for range 10 {
		name := prefix + "-" + utilrand.String(5)
		if _, known := r.Provisioner.Get(name); known {
			continue
		}
		switch _, err := r.Provisioner.Provider().Get(ctx, name); {
		case errors.Is(err, provider.ErrNotFound):
			return name, nil
		case err != nil:
			return "", fmt.Errorf("look for a free cluster name: %w", err)
		}
	}
	return "", fmt.Errorf("no free cluster name for %q", prefix)
}

// trimPrefix makes a pool or TestCluster name (a DNS subdomain) a prefix
// of a cluster name (a DNS label of at most 40 characters).
func trimPrefix(prefix string) string {
	prefix = strings.Trim(strings.ReplaceAll(prefix, ".", "-"), "-")
	if len(prefix) > 30 {
		prefix = strings.TrimRight(prefix[:30], "-")
	}
	return prefix
}
