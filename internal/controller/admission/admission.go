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
	releasing   map[string]bool
}

type poolState struct {
	pool         *v1alpha1.ClusterPool
	free         []provision.Status // Ready, unbound, oldest first
	provisioning int                // Creating, unbound
	building     []string           // names of the Creating, unbound
	claimed      int
	size         int
	waiting      int
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
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
	bound := map[string]bool{}
	perNamespace := map[string]int{}
	for _, tc := range tcs.Items {
		if tc.Spec.ClusterName != "" {
			bound[tc.Spec.ClusterName] = true
			perNamespace[tc.Namespace]++
		}
	}
	states := map[string]*poolState{}
	for i := range pools.Items {
		p := &pools.Items[i]
		if p.DeletionTimestamp.IsZero() {
			states[key(p.Namespace, p.Name)] = &poolState{pool: p}
		}
	}
	used := 0
	snapshot := r.Provisioner.Snapshot()
	known := map[string]bool{}
	for _, s := range snapshot {
		known[s.Name] = true
	}
	for _, tc := range tcs.Items {
		// Admitted, and not yet handed to the provisioner.
		if tc.Spec.TemplateRef != "" && tc.Spec.ClusterName != "" && !known[tc.Spec.ClusterName] && tc.DeletionTimestamp.IsZero() {
			used++
		}
	}
	r.mu.Lock()
	releasing := maps.Clone(r.releasing)
	r.mu.Unlock()
	for _, s := range snapshot {
		if releasing[s.Name] {
			continue // on its way out
		}
		pk := key(s.Labels[provision.LabelNamespace], s.Labels[provision.LabelPool])
		if s.State == provision.Failed {
			if !bound[s.Name] {
				r.Provisioner.Forget(s.Name)
				if s.Labels[provision.LabelPool] != "" {
					r.failedAt[pk] = now
				}
			}
			continue
		}
		used++
		if s.Labels[provision.LabelPool] == "" {
			continue
		}
		ps, ok := states[pk]
		if !ok || ps.pool.UID != types.UID(s.Labels[provision.LabelPoolUID]) {
			if !bound[s.Name] {
				r.release(ctx, s.Name) // its pool is gone
			}
			continue
		}
		ps.size++
		switch {
		case bound[s.Name]:
			ps.claimed++
		case s.State == provision.Ready:
			ps.free = append(ps.free, s)
		default:
			ps.provisioning++
			ps.building = append(ps.building, s.Name)
		}
	}
	for _, ps := range states {
		slices.SortFunc(ps.free, func(a, b provision.Status) int { return a.ReadyAt.Compare(b.ReadyAt) })
	}

	waiting := waitingInOrder(tcs.Items)
	positions := map[string]int32{}
	queueLength := map[string]float64{capacityQueue: 0}
	for _, ps := range states {
		queueLength["pool:"+key(ps.pool.Namespace, ps.pool.Name)] = 0
	}
	var errs []error
	// Decide in order, in memory; then write, in parallel. A write that
	// fails leaves its TestCluster waiting and its cluster free, which the
	// next pass sees.
	var writes []func(context.Context) error
	for _, tc := range waiting {
		q := capacityQueue
		served := false
		limited := r.MaxPerNamespace > 0 && perNamespace[tc.Namespace] >= r.MaxPerNamespace
		if tc.Spec.PoolRef != "" {
			pk := key(tc.Namespace, tc.Spec.PoolRef)
			q = "pool:" + pk
			if ps, ok := states[pk]; ok {
				if !limited && len(ps.free) > 0 {
					cluster := ps.free[0].Name
					writes = append(writes, func(ctx context.Context) error { return r.bind(ctx, tc, cluster, q, now) })
					ps.free, ps.claimed, served = ps.free[1:], ps.claimed+1, true
				} else {
					ps.waiting++
				}
			}
		} else if !limited && used < r.MaxClusters {
			name, err := r.newName(ctx, tc.Name)
			if err != nil {
				return reconcile.Result{}, err
			}
			writes = append(writes, func(ctx context.Context) error { return r.bind(ctx, tc, name, q, now) })
			used, served = used+1, true
		}
		if served {
			perNamespace[tc.Namespace]++
			continue
		}
		positions[q]++
		queueLength[q]++
		r.markQueued(tc, now)
		if position := positions[q]; tc.Status.QueuePosition != position {
			writes = append(writes, func(ctx context.Context) error {
				base := tc.DeepCopy()
				tc.Status.QueuePosition = position
				return client.IgnoreNotFound(r.Client.Status().Patch(ctx, tc, client.MergeFrom(base)))
			})
		}
	}
	var g errgroup.Group
	g.SetLimit(parallelWrites)
	for _, w := range writes {
		g.Go(func() error { return w(ctx) })
	}
	if err := g.Wait(); err != nil {
		errs = append(errs, err)
	}
	for q, n := range queueLength {
		metrics.QueueLength.WithLabelValues(q).Set(n)
	}
	// Claims bound but not yet published come first: building clusters
	// takes the CPU their last steps need. Refills wait until they are
	// Ready, which takes milliseconds.
	publishing := 0
	for _, tc := range tcs.Items {
		if st, ok := r.Provisioner.Get(tc.Spec.ClusterName); ok && tc.Spec.PoolRef != "" && st.State == provision.Ready &&
			tc.Status.Phase != v1alpha1.TestClusterReady && tc.DeletionTimestamp.IsZero() {
			publishing++
		}
	}
	for _, pk := range sortedKeys(states) {
		if err := r.reconcilePool(ctx, states[pk], &used, now, publishing == 0); err != nil {
			errs = append(errs, err)
		}
	}
	r.account(tcs.Items, now)
	if len(errs) > 0 {
		return reconcile.Result{}, errs[0]
	}
	if publishing > 0 {
		return reconcile.Result{RequeueAfter: 50 * time.Millisecond}, nil
	}
	return reconcile.Result{RequeueAfter: resync}, nil
}

func (r *Reconciler) init() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queuedSince == nil {
		r.queuedSince, r.accounted, r.failedAt, r.releasing = map[types.UID]time.Time{}, map[types.UID]time.Time{}, map[string]time.Time{}, map[string]bool{}
	}
}

// waitingInOrder returns the TestClusters without a cluster, in the order
// they are served: priority class, then creation, then name.
func waitingInOrder(tcs []v1alpha1.TestCluster) []*v1alpha1.TestCluster {
	var out []*v1alpha1.TestCluster
	for i := range tcs {
		if tcs[i].Spec.ClusterName == "" && tcs[i].DeletionTimestamp.IsZero() {
			out = append(out, &tcs[i])
		}
	}
	slices.SortStableFunc(out, func(a, b *v1alpha1.TestCluster) int {
		return cmp.Or(
			cmp.Compare(a.Spec.Priority.Rank(), b.Spec.Priority.Rank()),
			a.CreationTimestamp.Compare(b.CreationTimestamp.Time),
			cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Name, b.Name),
		)
	})
	return out
}

// bind sets spec.clusterName. It needs no optimistic lock: the API server
// refuses to change a clusterName once set (a CEL rule), and only this
// reconciler hands out clusters, one pass at a time.
func (r *Reconciler) bind(ctx context.Context, tc *v1alpha1.TestCluster, cluster, queue string, now time.Time) error {
	base := tc.DeepCopy()
	tc.Spec.ClusterName = cluster
	if err := r.Client.Patch(ctx, tc, client.MergeFrom(base)); err != nil {
		tc.Spec.ClusterName = ""
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("bind %s to cluster %q: %w", klog.KObj(tc), cluster, err)
	}
	log.FromContext(ctx).Info("Bound TestCluster", "testcluster", klog.KObj(tc), "cluster", cluster, "queue", queue)
	r.mu.Lock()
	since, waited := r.queuedSince[tc.UID]
	delete(r.queuedSince, tc.UID)
	r.mu.Unlock()
	if waited {
		metrics.QueueWait.WithLabelValues(queue).Observe(now.Sub(since).Seconds())
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

// reconcilePool keeps minReady spare clusters (plus one per waiting claim)
// within maxSize and the budget, and writes the pool's status.
func (r *Reconciler) reconcilePool(ctx context.Context, ps *poolState, used *int, now time.Time, mayCreate bool) error {
	p := ps.pool
	base := p.DeepCopy()
	pk := key(p.Namespace, p.Name)
	want := int(p.Spec.MinReadyOrDefault()) + ps.waiting - len(ps.free) - ps.provisioning
	want = min(want, int(p.Spec.MaxSizeOrDefault())-ps.size, r.MaxClusters-*used)
	r.mu.Lock()
	failedAt, failed := r.failedAt[pk]
	r.mu.Unlock()
	backoff := failed && now.Sub(failedAt) < failureBackoff
	// Over maxSize (lowered, or a restart found more): shed unbound
	// clusters, those still building first.
	for ps.size > int(p.Spec.MaxSizeOrDefault()) {
		var name string
		if len(ps.building) > 0 {
			name, ps.building, ps.provisioning = ps.building[0], ps.building[1:], ps.provisioning-1
		} else if len(ps.free) > 0 {
			name, ps.free = ps.free[len(ps.free)-1].Name, ps.free[:len(ps.free)-1]
		} else {
			break // the rest are claimed; they go when their leases end
		}
		log.FromContext(ctx).Info("Deleting pool cluster above maxSize", "pool", klog.KObj(p), "cluster", name)
		r.release(ctx, name)
		ps.size--
		*used--
	}
	var problem string
	if want > 0 && !backoff && mayCreate {
		tmpl := &v1alpha1.ClusterTemplate{}
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.TemplateRef}, tmpl); err != nil {
			if !apierrors.IsNotFound(err) {
				return err
			}
			problem = fmt.Sprintf("ClusterTemplate %q not found in namespace %q: create it", p.Spec.TemplateRef, p.Namespace)
			want = 0
		}
		for range want {
			name, err := r.newName(ctx, p.Name)
			if err != nil {
				return err
			}
			log.FromContext(ctx).Info("Creating pool cluster", "pool", klog.KObj(p), "cluster", name)
			r.Provisioner.Ensure(name, tmpl.Spec, provision.PoolLabels(r.Server, p))
			ps.provisioning++
			ps.size++
			*used++
		}
	}
	p.Status.ObservedGeneration = p.Generation
	p.Status.Size, p.Status.Ready, p.Status.Provisioning = int32(ps.size), int32(len(ps.free)), int32(ps.provisioning)
	p.Status.Claimed, p.Status.Queued = int32(ps.claimed), int32(ps.waiting)
	metrics.PoolReady.WithLabelValues(p.Namespace, p.Name).Set(float64(len(ps.free)))
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReady,
		Message: fmt.Sprintf("%d Ready clusters, minReady %d", len(ps.free), p.Spec.MinReadyOrDefault()), ObservedGeneration: p.Generation}
	switch {
	case problem != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonTemplateNotFound, problem
	case backoff:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonProvisionFailed, "a cluster create failed; retrying shortly (see the server log)"
	case int32(len(ps.free)) < p.Spec.MinReadyOrDefault():
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonBelowMinReady
		if *used >= r.MaxClusters {
			cond.Message += fmt.Sprintf("; the server's budget of %d clusters is used up", r.MaxClusters)
		}
	}
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	if equality.Semantic.DeepEqual(base.Status, p.Status) {
		return nil
	}
	// An update, not a patch: zero counts must be written too. A conflict
	// (a stale cache) is retried by the next pass.
	return client.IgnoreNotFound(r.Client.Status().Update(ctx, p))
}

// release deletes a cluster nobody can claim any more, in the background.
func (r *Reconciler) release(ctx context.Context, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.releasing[name] {
		return
	}
	r.releasing[name] = true
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := r.Provisioner.Delete(ctx, name); err != nil {
			log.FromContext(ctx).Error(err, "Deleting a cluster of a deleted pool", "cluster", name)
		}
		r.mu.Lock()
		delete(r.releasing, name)
		r.mu.Unlock()
	}()
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
		if _, err := r.Provisioner.Provider().Get(ctx, name); err != nil {
			return name, nil
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

func key(namespace, name string) string { return namespace + "/" + name }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
