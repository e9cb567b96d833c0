package admission

import (
	"cmp"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
)

// Input is everything one pass of the queue decides on: the lists as read
// now and the server's limits. Decide never changes it.
type Input struct {
	// TestClusters are every TestCluster, read from the API server.
	TestClusters []v1alpha1.TestCluster
	// Pools are every ClusterPool.
	Pools []v1alpha1.ClusterPool
	// Clusters are what the provisioner knows of every cluster.
	Clusters []provision.Status
	// MaxClusters is the capacity budget: clusters of this server, in any
	// state, at once.
	MaxClusters int
	// MaxPerNamespace, when positive, bounds the bound or building
	// TestClusters of one namespace.
	MaxPerNamespace int
	// FailedAt is when a create of each pool (by namespace/name) last
	// failed.
	FailedAt map[string]time.Time
	// Failures counts the creates of each pool that failed in a row, its
	// addons' included: each one doubles the pool's backoff (see
	// Backoff).
	Failures map[string]int
	// Now is the time of the pass.
	Now time.Time
}

// Bind binds a waiting TestCluster to a cluster.
type Bind struct {
	// TestCluster is the waiting claim or request.
	TestCluster *v1alpha1.TestCluster
	// Cluster is the pool cluster to bind; empty for a template request,
	// which gets a new name.
	Cluster string
	// Queue is the queue the TestCluster waited in.
	Queue string
}

// Position is a waiting TestCluster's new place in its queue.
type Position struct {
	TestCluster *v1alpha1.TestCluster
	Queue       string
	Position    int32
}

// Pool is what a pass decided for one pool.
type Pool struct {
	Pool *v1alpha1.ClusterPool
	// Create is how many clusters to start.
	Create int
	// Shed are clusters above maxSize to delete.
	Shed []string
	// Ready, Provisioning, Claimed, Size and Waiting are its counts after
	// the pass.
	Ready, Provisioning, Claimed, Size, Waiting int
	// Backoff: a create failed lately, so none is started now.
	Backoff bool
	// RetryIn is how long the backoff lasts from now.
	RetryIn time.Duration
	// BudgetUsedUp: the server's budget kept it below what it wants.
	BudgetUsedUp bool
}

// Plan is what one pass of the queue decided.
type Plan struct {
	// Binds, in queue order.
	Binds []Bind
	// Positions that changed.
	Positions []Position
	// Release are clusters nobody may claim any more: of a deleted pool,
	// failed or lost before anyone claimed them, or recorded for a claim
	// that is gone.
	Release []string
	// Pools, by namespace/name.
	Pools map[string]*Pool
	// QueueLength is the number waiting in each queue.
	QueueLength map[string]int
	// Failed are the pools (namespace/name) whose create failed since the
	// last pass, with the error.
	Failed map[string]error
	// Publishing counts pool claims bound to a Ready cluster and not yet
	// Ready themselves: while there are any, no pool creates (building
	// takes the CPU their last steps need).
	Publishing int
	// Recovered are the pools (namespace/name) with a cluster that became
	// Ready after their last failed create: their failures in a row end.
	Recovered []string
}

// Backoff bounds between a pool's failed create and its next one: the base
// after the first failure, doubled by each further failure in a row, at
// most maxFailureBackoff.
const maxFailureBackoff = 5 * time.Minute

// Backoff is how long a pool waits after its failures-th failed create in
// a row before it creates again.
func Backoff(failures int) time.Duration {
	d := failureBackoff
	for i := 1; i < failures && d < maxFailureBackoff; i++ {
		d *= 2
	}
	return min(d, maxFailureBackoff)
}

type poolState struct {
	pool         *v1alpha1.ClusterPool
	free         []provision.Status // Ready, unclaimed, oldest first
	provisioning int                // Creating, unclaimed
	building     []string           // names of the Creating, unclaimed
	claimed      int
	size         int
	waiting      int
}

// Decide runs one pass of the queue, in memory: it binds waiting
// TestClusters in order (priority, then creation, then name) to free pool
// clusters or to capacity for a new cluster, releases clusters nobody may
// claim, sizes the pools and says which queue positions changed.
//
// A pool cluster counts as claimed only when its own record (its labels)
// names the UID of a TestCluster bound to it: a spec.clusterName set by
// anyone but the server binds nothing.
func Decide(in Input) Plan {
	plan := Plan{Pools: map[string]*Pool{}, QueueLength: map[string]int{capacityQueue: 0}, Failed: map[string]error{}}
	byUID := map[types.UID]*v1alpha1.TestCluster{}
	perNamespace := map[string]int{}
	for i := range in.TestClusters {
		tc := &in.TestClusters[i]
		byUID[tc.UID] = tc
		if tc.Spec.ClusterName != "" {
			perNamespace[tc.Namespace]++
		}
	}
	states := map[string]*poolState{}
	for i := range in.Pools {
		p := &in.Pools[i]
		if p.DeletionTimestamp.IsZero() {
			k := key(p.Namespace, p.Name)
			states[k] = &poolState{pool: p}
			plan.QueueLength["pool:"+k] = 0
		}
	}
	known := map[string]bool{}
	for _, s := range in.Clusters {
		known[s.Name] = true
	}
	used := 0
	for _, tc := range in.TestClusters {
		// Admitted, and not yet handed to the provisioner.
		if tc.Spec.TemplateRef != "" && tc.Spec.ClusterName != "" && !known[tc.Spec.ClusterName] && tc.DeletionTimestamp.IsZero() {
			used++
		}
	}
	resumed := map[types.UID]bool{}
	clusters := slices.Clone(in.Clusters)
	slices.SortFunc(clusters, func(a, b provision.Status) int { return cmp.Compare(a.Name, b.Name) })
	for _, s := range clusters {
		used++
		if s.State == provision.Deleting {
			continue
		}
		claimUID := types.UID(s.Labels[provision.LabelTestClusterUID])
		owner := byUID[claimUID]
		validlyBound := owner != nil && owner.Spec.ClusterName == s.Name
		poolName := s.Labels[provision.LabelPool]
		if poolName == "" {
			// Built for one TestCluster: it goes when that one is gone.
			if claimUID != "" && owner == nil {
				plan.Release = append(plan.Release, s.Name)
			}
			continue
		}
		pk := key(s.Labels[provision.LabelNamespace], poolName)
		ps, ok := states[pk]
		livePool := ok && ps.pool.UID == types.UID(s.Labels[provision.LabelPoolUID])
		switch {
		case validlyBound:
			if livePool {
				ps.size++
				ps.claimed++
			}
			continue
		case claimUID != "" && owner != nil && owner.Spec.ClusterName == "" && owner.DeletionTimestamp.IsZero() && !resumed[owner.UID] &&
			owner.Spec.PoolRef == poolName && owner.Namespace == s.Labels[provision.LabelNamespace] &&
			(s.State == provision.Ready || s.State == provision.Creating):
			// A bind the last pass (or a killed server) recorded on the
			// cluster but did not finish: finish it. A cluster still being
			// checked after a restart (Creating) is kept for its claim,
			// which waits for it rather than for another.
			if s.State == provision.Ready {
				plan.Binds = append(plan.Binds, Bind{TestCluster: owner, Cluster: s.Name, Queue: "pool:" + pk})
			}
			resumed[owner.UID] = true
			perNamespace[owner.Namespace]++
			if livePool {
				ps.size++
				ps.claimed++
			}
			continue
		case claimUID != "":
			// Promised to a claim that is gone or bound elsewhere.
			plan.Release = append(plan.Release, s.Name)
			continue
		case !livePool:
			plan.Release = append(plan.Release, s.Name) // its pool is gone
			continue
		case s.State == provision.Failed:
			plan.Release = append(plan.Release, s.Name)
			plan.Failed[pk] = s.Err
			continue
		case s.State == provision.Lost:
			plan.Release = append(plan.Release, s.Name)
			continue
		}
		ps.size++
		if s.State == provision.Ready {
			ps.free = append(ps.free, s)
		} else {
			ps.provisioning++
			ps.building = append(ps.building, s.Name)
		}
	}
	for _, ps := range states {
		slices.SortStableFunc(ps.free, func(a, b provision.Status) int { return a.ReadyAt.Compare(b.ReadyAt) })
	}
	for _, s := range clusters {
		pk := key(s.Labels[provision.LabelNamespace], s.Labels[provision.LabelPool])
		if failedAt, ok := in.FailedAt[pk]; ok && s.Labels[provision.LabelPool] != "" && s.State == provision.Ready && s.ReadyAt.After(failedAt) &&
			!slices.Contains(plan.Recovered, pk) {
			plan.Recovered = append(plan.Recovered, pk)
		}
	}

	positions := map[string]int32{}
	for _, tc := range waitingInOrder(in.TestClusters) {
		if resumed[tc.UID] {
			continue
		}
		q := capacityQueue
		served := false
		limited := in.MaxPerNamespace > 0 && perNamespace[tc.Namespace] >= in.MaxPerNamespace
		if tc.Spec.PoolRef != "" {
			pk := key(tc.Namespace, tc.Spec.PoolRef)
			q = "pool:" + pk
			if ps, ok := states[pk]; ok {
				if !limited && len(ps.free) > 0 {
					plan.Binds = append(plan.Binds, Bind{TestCluster: tc, Cluster: ps.free[0].Name, Queue: q})
					ps.free, ps.claimed, served = ps.free[1:], ps.claimed+1, true
				} else {
					ps.waiting++
				}
			}
		} else if !limited && used < in.MaxClusters {
			plan.Binds = append(plan.Binds, Bind{TestCluster: tc, Queue: q})
			used, served = used+1, true
		}
		if served {
			perNamespace[tc.Namespace]++
			continue
		}
		positions[q]++
		plan.QueueLength[q]++
		if position := positions[q]; tc.Status.QueuePosition != position {
			plan.Positions = append(plan.Positions, Position{TestCluster: tc, Queue: q, Position: position})
		}
	}

	status := map[string]provision.Status{}
	for _, s := range in.Clusters {
		status[s.Name] = s
	}
	for _, tc := range in.TestClusters {
		if st, ok := status[tc.Spec.ClusterName]; ok && tc.Spec.PoolRef != "" && st.State == provision.Ready &&
			tc.Status.Phase != v1alpha1.TestClusterReady && tc.DeletionTimestamp.IsZero() {
			plan.Publishing++
		}
	}
	for _, pk := range sortedKeys(states) {
		ps := states[pk]
		p := ps.pool
		dp := &Pool{Pool: p}
		plan.Pools[pk] = dp
		// Over maxSize (lowered, or a restart found more): shed unclaimed
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
			dp.Shed = append(dp.Shed, name)
			ps.size--
		}
		want := int(p.Spec.MinReadyOrDefault()) + ps.waiting - len(ps.free) - ps.provisioning
		budget := in.MaxClusters - used
		want = min(want, int(p.Spec.MaxSizeOrDefault())-ps.size)
		if want > budget {
			dp.BudgetUsedUp = true
			want = budget
		}
		failedAt, ok := in.FailedAt[pk]
		_, failedNow := plan.Failed[pk]
		backoff := Backoff(in.Failures[pk] + btoi(failedNow))
		switch {
		case failedNow:
			dp.Backoff, dp.RetryIn = true, backoff
		case ok && in.Now.Sub(failedAt) < backoff:
			dp.Backoff, dp.RetryIn = true, backoff-in.Now.Sub(failedAt)
		}
		if want > 0 && !dp.Backoff && plan.Publishing == 0 {
			dp.Create = want
			ps.provisioning += want
			ps.size += want
			used += want
		}
		dp.Ready, dp.Provisioning, dp.Claimed, dp.Size, dp.Waiting = len(ps.free), ps.provisioning, ps.claimed, ps.size, ps.waiting
		if used >= in.MaxClusters {
			dp.BudgetUsedUp = true
		}
	}
	return plan
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

func key(namespace, name string) string { return namespace + "/" + name }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
