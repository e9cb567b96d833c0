package admission

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// A small world for table tests, in the style of Boskos' ranch tests:
// claims, requests, pools and clusters built by short helpers.

func ptr[T any](v T) *T { return &v }

func poolObj(name string, minReady, maxSize int32) v1alpha1.ClusterPool {
	return v1alpha1.ClusterPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("pool-" + name)},
		Spec:       v1alpha1.ClusterPoolSpec{TemplateRef: "t", MinReady: ptr(minReady), MaxSize: ptr(maxSize)},
	}
}

type tcOpt func(*v1alpha1.TestCluster)

func bound(cluster string) tcOpt {
	return func(tc *v1alpha1.TestCluster) { tc.Spec.ClusterName = cluster }
}
func prio(p v1alpha1.Priority) tcOpt { return func(tc *v1alpha1.TestCluster) { tc.Spec.Priority = p } }
func in(ns string) tcOpt             { return func(tc *v1alpha1.TestCluster) { tc.Namespace = ns } }
func deleting() tcOpt {
	return func(tc *v1alpha1.TestCluster) { tc.DeletionTimestamp = &metav1.Time{Time: t0} }
}
func position(p int32) tcOpt { return func(tc *v1alpha1.TestCluster) { tc.Status.QueuePosition = p } }

// claimOf is a claim on pool, created at second n.
func claimOf(name, pool string, n int, opts ...tcOpt) v1alpha1.TestCluster {
	tc := v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name), CreationTimestamp: metav1.Time{Time: t0.Add(time.Duration(n) * time.Second)}},
		Spec:       v1alpha1.TestClusterSpec{PoolRef: pool},
	}
	for _, o := range opts {
		o(&tc)
	}
	return tc
}

// request is a template request, created at second n.
func request(name string, n int, opts ...tcOpt) v1alpha1.TestCluster {
	tc := claimOf(name, "", n, opts...)
	tc.Spec.PoolRef, tc.Spec.TemplateRef = "", "t"
	return tc
}

type clOpt func(*provision.Status)

func claimedBy(tc string) clOpt {
	return func(s *provision.Status) {
		s.Labels[provision.LabelTestCluster], s.Labels[provision.LabelTestClusterUID] = tc, "uid-"+tc
	}
}
func state(st provision.State) clOpt { return func(s *provision.Status) { s.State = st } }
func readyAt(n int) clOpt {
	return func(s *provision.Status) { s.ReadyAt = t0.Add(time.Duration(n) * time.Second) }
}

// member is a Ready cluster of pool.
func member(name, pool string, opts ...clOpt) provision.Status {
	s := provision.Status{Name: name, State: provision.Ready, Labels: map[string]string{
		provision.LabelServer: "s", provision.LabelNamespace: "ns", provision.LabelPool: pool, provision.LabelPoolUID: "pool-" + pool,
	}}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// built is a cluster built for the template request tc.
func built(name, tc string, opts ...clOpt) provision.Status {
	s := provision.Status{Name: name, State: provision.Ready, Labels: map[string]string{
		provision.LabelServer: "s", provision.LabelNamespace: "ns", provision.LabelTestCluster: tc, provision.LabelTestClusterUID: "uid-" + tc,
	}}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// summary is a plan in words, for diffs.
type summary struct {
	Binds     []string
	Positions []string
	Release   []string
	Pools     map[string]string
	Failed    []string
	Recovered []string
}

func summarize(p Plan) summary {
	s := summary{Pools: map[string]string{}}
	for _, b := range p.Binds {
		target := b.Cluster
		if target == "" {
			target = "new"
		}
		s.Binds = append(s.Binds, b.TestCluster.Name+"→"+target)
	}
	for _, pos := range p.Positions {
		s.Positions = append(s.Positions, fmt.Sprintf("%s@%d", pos.TestCluster.Name, pos.Position))
	}
	s.Release = p.Release
	for k, dp := range p.Pools {
		s.Pools[k] = fmt.Sprintf("create=%d shed=%v ready=%d provisioning=%d claimed=%d size=%d waiting=%d backoff=%t",
			dp.Create, dp.Shed, dp.Ready, dp.Provisioning, dp.Claimed, dp.Size, dp.Waiting, dp.Backoff)
	}
	for k := range p.Failed {
		s.Failed = append(s.Failed, k)
	}
	s.Recovered = p.Recovered
	return s
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    Input
		want  summary
		check func(t *testing.T, p Plan)
	}{
		{
			name: "an empty pool fills to minReady",
			in:   Input{Pools: []v1alpha1.ClusterPool{poolObj("ci", 2, 4)}, MaxClusters: 10},
			want: summary{Pools: map[string]string{"ns/ci": "create=2 shed=[] ready=0 provisioning=2 claimed=0 size=2 waiting=0 backoff=false"}},
		},
		{
			name: "claims bind to the oldest Ready clusters in queue order; the rest wait with positions",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 2, 2)},
				TestClusters: []v1alpha1.TestCluster{claimOf("late", "ci", 5), claimOf("early", "ci", 1), claimOf("high", "ci", 9, prio(v1alpha1.PriorityHigh))},
				Clusters:     []provision.Status{member("c-new", "ci", readyAt(2)), member("c-old", "ci", readyAt(1))},
				MaxClusters:  10,
			},
			want: summary{
				Binds:     []string{"high→c-old", "early→c-new"},
				Positions: []string{"late@1"},
				Pools:     map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=2 size=2 waiting=1 backoff=false"},
			},
		},
		{
			name: "a position that did not change is not written again",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 0, 1)},
				TestClusters: []v1alpha1.TestCluster{claimOf("a", "ci", 1, position(1)), claimOf("b", "ci", 2, position(1))},
				Clusters:     []provision.Status{member("c1", "ci", claimedBy("x"))},
				MaxClusters:  10,
			},
			want: summary{
				Positions: []string{"b@2"},
				Release:   []string{"c1"}, // promised to a claim that is gone
				Pools:     map[string]string{"ns/ci": "create=1 shed=[] ready=0 provisioning=1 claimed=0 size=1 waiting=2 backoff=false"},
			},
		},
		{
			name: "a clusterName set by a user binds nothing: the cluster stays free and goes to the queue's first",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 1, 1)},
				TestClusters: []v1alpha1.TestCluster{claimOf("thief", "ci", 0, bound("c1")), claimOf("honest", "ci", 1)},
				Clusters:     []provision.Status{member("c1", "ci")},
				MaxClusters:  10,
			},
			want: summary{
				Binds: []string{"honest→c1"},
				Pools: map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=1 size=1 waiting=0 backoff=false"},
			},
		},
		{
			name: "a claim recorded on the cluster but not written to the TestCluster (a killed server) is finished first",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 0, 2)},
				TestClusters: []v1alpha1.TestCluster{claimOf("first", "ci", 0), claimOf("recorded", "ci", 1)},
				Clusters:     []provision.Status{member("c1", "ci", claimedBy("recorded")), member("c2", "ci")},
				MaxClusters:  10,
			},
			want: summary{
				Binds: []string{"recorded→c1", "first→c2"},
				Pools: map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=2 size=2 waiting=0 backoff=false"},
			},
		},
		{
			name: "a claim recorded on a cluster still being checked after a restart waits for that cluster; it is neither released nor given another",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 0, 3)},
				TestClusters: []v1alpha1.TestCluster{claimOf("recorded", "ci", 0), claimOf("next", "ci", 1)},
				Clusters:     []provision.Status{member("c1", "ci", claimedBy("recorded"), state(provision.Creating)), member("c2", "ci")},
				MaxClusters:  10,
			},
			want: summary{
				Binds: []string{"next→c2"},
				Pools: map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=2 size=2 waiting=0 backoff=false"},
			},
		},
		{
			name: "a claim recorded on a cluster that failed its checks after a restart is released; the claim gets another",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 0, 3)},
				TestClusters: []v1alpha1.TestCluster{claimOf("recorded", "ci", 0)},
				Clusters:     []provision.Status{member("c1", "ci", claimedBy("recorded"), state(provision.Lost)), member("c2", "ci")},
				MaxClusters:  10,
			},
			want: summary{
				Binds:   []string{"recorded→c2"},
				Release: []string{"c1"},
				Pools:   map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=1 size=1 waiting=0 backoff=false"},
			},
		},
		{
			name: "a validly bound cluster is claimed, also while its TestCluster is being deleted",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 1, 3)},
				TestClusters: []v1alpha1.TestCluster{claimOf("a", "ci", 0, bound("c1")), claimOf("b", "ci", 0, bound("c2"), deleting())},
				Clusters:     []provision.Status{member("c1", "ci", claimedBy("a")), member("c2", "ci", claimedBy("b")), member("c3", "ci")},
				MaxClusters:  10,
			},
			want: summary{Pools: map[string]string{"ns/ci": "create=0 shed=[] ready=1 provisioning=0 claimed=2 size=3 waiting=0 backoff=false"}},
		},
		{
			name: "clusters being deleted, failed or lost are never bound; failed and lost ones are released",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 1, 5)},
				TestClusters: []v1alpha1.TestCluster{claimOf("a", "ci", 0)},
				Clusters: []provision.Status{
					member("deleting", "ci", state(provision.Deleting)),
					member("failed", "ci", state(provision.Failed), func(s *provision.Status) { s.Err = errors.New("boom") }),
					member("lost", "ci", state(provision.Lost)),
				},
				MaxClusters: 10,
			},
			want: summary{
				Positions: []string{"a@1"},
				Release:   []string{"failed", "lost"},
				Failed:    []string{"ns/ci"},
				Pools:     map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=0 size=0 waiting=1 backoff=true"},
			},
		},
		{
			name: "a failed create backs the pool off for a while",
			in: Input{
				Pools:       []v1alpha1.ClusterPool{poolObj("ci", 1, 1)},
				FailedAt:    map[string]time.Time{"ns/ci": t0.Add(-5 * time.Second)},
				Now:         t0,
				MaxClusters: 10,
			},
			want: summary{Pools: map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=0 size=0 waiting=0 backoff=true"}},
		},
		{
			name: "after the backoff the pool creates again",
			in: Input{
				Pools:       []v1alpha1.ClusterPool{poolObj("ci", 1, 1)},
				FailedAt:    map[string]time.Time{"ns/ci": t0.Add(-time.Minute)},
				Now:         t0,
				MaxClusters: 10,
			},
			want: summary{Pools: map[string]string{"ns/ci": "create=1 shed=[] ready=0 provisioning=1 claimed=0 size=1 waiting=0 backoff=false"}},
		},
		{
			name: "failures in a row double the backoff",
			in: Input{
				Pools:       []v1alpha1.ClusterPool{poolObj("ci", 1, 1)},
				FailedAt:    map[string]time.Time{"ns/ci": t0.Add(-15 * time.Second)},
				Failures:    map[string]int{"ns/ci": 2},
				Now:         t0,
				MaxClusters: 10,
			},
			want:  summary{Pools: map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=0 size=0 waiting=0 backoff=true"}},
			check: retryIn("ns/ci", 5*time.Second),
		},
		{
			name: "after the doubled backoff the pool creates again",
			in: Input{
				Pools:       []v1alpha1.ClusterPool{poolObj("ci", 1, 1)},
				FailedAt:    map[string]time.Time{"ns/ci": t0.Add(-21 * time.Second)},
				Failures:    map[string]int{"ns/ci": 2},
				Now:         t0,
				MaxClusters: 10,
			},
			want:  summary{Pools: map[string]string{"ns/ci": "create=1 shed=[] ready=0 provisioning=1 claimed=0 size=1 waiting=0 backoff=false"}},
			check: retryIn("ns/ci", 0),
		},
		{
			name: "a cluster whose addons failed is released, and the pool backs off for its failures in a row",
			in: Input{
				Pools: []v1alpha1.ClusterPool{poolObj("ci", 1, 2)},
				Clusters: []provision.Status{member("addons-failed", "ci", state(provision.Failed), func(s *provision.Status) {
					s.Err = &addons.PhaseError{Phase: "apps", Reason: "not ready"}
				})},
				FailedAt:    map[string]time.Time{"ns/ci": t0.Add(-time.Hour)},
				Failures:    map[string]int{"ns/ci": 3},
				Now:         t0,
				MaxClusters: 10,
			},
			want: summary{
				Release: []string{"addons-failed"},
				Failed:  []string{"ns/ci"},
				Pools:   map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=0 size=0 waiting=0 backoff=true"},
			},
			check: retryIn("ns/ci", 80*time.Second),
		},
		{
			name: "a pool with a cluster Ready since its last failure has recovered",
			in: Input{
				Pools:       []v1alpha1.ClusterPool{poolObj("ci", 1, 2), poolObj("other", 1, 1)},
				Clusters:    []provision.Status{member("new", "ci", readyAt(0)), member("old", "other", readyAt(-60))},
				FailedAt:    map[string]time.Time{"ns/ci": t0.Add(-30 * time.Second), "ns/other": t0.Add(-30 * time.Second)},
				Failures:    map[string]int{"ns/ci": 4, "ns/other": 4},
				Now:         t0,
				MaxClusters: 10,
			},
			want: summary{
				Recovered: []string{"ns/ci"},
				Pools: map[string]string{
					"ns/ci":    "create=0 shed=[] ready=1 provisioning=0 claimed=0 size=1 waiting=0 backoff=true",
					"ns/other": "create=0 shed=[] ready=1 provisioning=0 claimed=0 size=1 waiting=0 backoff=true",
				},
			},
		},
		{
			name: "clusters of a deleted pool are released unless claimed",
			in: Input{
				TestClusters: []v1alpha1.TestCluster{claimOf("a", "gone", 0, bound("c1"))},
				Clusters:     []provision.Status{member("c1", "gone", claimedBy("a")), member("c2", "gone")},
				MaxClusters:  10,
			},
			want: summary{Release: []string{"c2"}},
		},
		{
			name: "a pool recreated under the same name does not get the old pool's clusters",
			in: Input{
				Pools:       []v1alpha1.ClusterPool{poolObj("ci", 0, 2)},
				Clusters:    []provision.Status{member("old", "ci", func(s *provision.Status) { s.Labels[provision.LabelPoolUID] = "an-older-uid" })},
				MaxClusters: 10,
			},
			want: summary{Release: []string{"old"}, Pools: map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=0 size=0 waiting=0 backoff=false"}},
		},
		{
			name: "above maxSize, building clusters are shed first, then the newest Ready; claimed ones stay",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 0, 2)},
				TestClusters: []v1alpha1.TestCluster{claimOf("a", "ci", 0, bound("c1"))},
				Clusters: []provision.Status{
					member("c1", "ci", claimedBy("a")), member("c2", "ci", readyAt(1)), member("c3", "ci", readyAt(2)),
					member("b1", "ci", state(provision.Creating)),
				},
				MaxClusters: 10,
			},
			want: summary{Pools: map[string]string{"ns/ci": "create=0 shed=[b1 c3] ready=1 provisioning=0 claimed=1 size=2 waiting=0 backoff=false"}},
		},
		{
			name: "template requests are admitted within the budget, in priority order",
			in: Input{
				TestClusters: []v1alpha1.TestCluster{request("r1", 0), request("r2", 1), request("urgent", 2, prio(v1alpha1.PriorityHigh)), request("r3", 3)},
				Clusters:     []provision.Status{built("x-abc", "x")}, // its TestCluster is gone
				MaxClusters:  3,
			},
			want: summary{
				Binds:     []string{"urgent→new", "r1→new"},
				Positions: []string{"r2@1", "r3@2"},
				Release:   []string{"x-abc"},
			},
		},
		{
			name: "admitted requests not yet building count against the budget",
			in: Input{
				TestClusters: []v1alpha1.TestCluster{request("a", 0, bound("a-1")), request("b", 1)},
				MaxClusters:  1,
			},
			want: summary{Positions: []string{"b@1"}},
		},
		{
			name: "the per-namespace limit holds claims and requests back; other namespaces go ahead",
			in: Input{
				Pools: []v1alpha1.ClusterPool{poolObj("ci", 1, 3)},
				TestClusters: []v1alpha1.TestCluster{
					claimOf("a", "ci", 0, bound("c1")), claimOf("b", "ci", 1), request("r", 2),
					request("other", 3, in("other")),
				},
				Clusters:        []provision.Status{member("c1", "ci", claimedBy("a")), member("c2", "ci")},
				MaxClusters:     10,
				MaxPerNamespace: 1,
			},
			want: summary{
				Binds:     []string{"other→new"},
				Positions: []string{"b@1", "r@1"},
				Pools:     map[string]string{"ns/ci": "create=0 shed=[] ready=1 provisioning=0 claimed=1 size=2 waiting=1 backoff=false"},
			},
		},
		{
			name: "the budget bounds pool refills",
			in: Input{
				Pools:       []v1alpha1.ClusterPool{poolObj("a", 3, 3), poolObj("b", 3, 3)},
				MaxClusters: 4,
			},
			want: summary{Pools: map[string]string{
				"ns/a": "create=3 shed=[] ready=0 provisioning=3 claimed=0 size=3 waiting=0 backoff=false",
				"ns/b": "create=1 shed=[] ready=0 provisioning=1 claimed=0 size=1 waiting=0 backoff=false",
			}},
		},
		{
			name: "no refill while a bound claim is being published",
			in: Input{
				Pools:        []v1alpha1.ClusterPool{poolObj("ci", 1, 3)},
				TestClusters: []v1alpha1.TestCluster{claimOf("a", "ci", 0, bound("c1"))},
				Clusters:     []provision.Status{member("c1", "ci", claimedBy("a"))},
				MaxClusters:  10,
			},
			want: summary{Pools: map[string]string{"ns/ci": "create=0 shed=[] ready=0 provisioning=0 claimed=1 size=1 waiting=0 backoff=false"}},
			check: func(t *testing.T, p Plan) {
				if p.Publishing != 1 {
					t.Errorf("Publishing = %d, want 1", p.Publishing)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprintf("%+v", tc.in)
			plan := Decide(tc.in)
			got := summarize(plan)
			if tc.want.Pools == nil {
				tc.want.Pools = map[string]string{}
			}
			if diff := cmp.Diff(tc.want, got, cmp.Transformer("empty", func(s []string) []string {
				if len(s) == 0 {
					return nil
				}
				return s
			})); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if tc.check != nil {
				tc.check(t, plan)
			}
			if after := fmt.Sprintf("%+v", tc.in); after != before {
				t.Error("Decide changed its input")
			}
		})
	}
}

func TestDecideNeverBindsOneClusterTwice(t *testing.T) {
	// Many claims, few clusters, some already recorded: every cluster is
	// bound at most once, whatever the order.
	var tcs []v1alpha1.TestCluster
	for i := range 30 {
		tcs = append(tcs, claimOf(fmt.Sprintf("c%02d", i), "ci", i%7))
	}
	clusters := []provision.Status{member("m1", "ci"), member("m2", "ci", claimedBy("c05")), member("m3", "ci"), member("m4", "ci", claimedBy("c05"))}
	plan := Decide(Input{Pools: []v1alpha1.ClusterPool{poolObj("ci", 2, 4)}, TestClusters: tcs, Clusters: clusters, MaxClusters: 10})
	seen := map[string]string{}
	claims := map[string]bool{}
	for _, b := range plan.Binds {
		if other, ok := seen[b.Cluster]; ok {
			t.Fatalf("cluster %s bound to %s and %s", b.Cluster, other, b.TestCluster.Name)
		}
		if claims[b.TestCluster.Name] {
			t.Fatalf("%s bound twice", b.TestCluster.Name)
		}
		seen[b.Cluster], claims[b.TestCluster.Name] = b.TestCluster.Name, true
	}
	if len(plan.Binds) != 3 {
		t.Errorf("%d binds, want 3 (m2 resumed for c05; m4, a second record for c05, released; m1 and m3 free): %+v", len(plan.Binds), summarize(plan))
	}
}

func retryIn(pool string, want time.Duration) func(t *testing.T, p Plan) {
	return func(t *testing.T, p Plan) {
		t.Helper()
		if got := p.Pools[pool].RetryIn; got != want {
			t.Errorf("pool %s: RetryIn = %s, want %s", pool, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for failures, want := range map[int]time.Duration{
		0: 10 * time.Second, 1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second,
		5: 160 * time.Second, 6: 5 * time.Minute, 1000: 5 * time.Minute,
	} {
		if got := Backoff(failures); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", failures, got, want)
		}
	}
}
