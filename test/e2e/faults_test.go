package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/failpoint"
	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
)

// faultSequenceEnv replays a fault sequence: the failpoints, comma-separated,
// as TestServerFaults logs them.
const faultSequenceEnv = "EPHEMERA_FAULT_SEQUENCE"

// faultRounds is how often the suite arms each failpoint.
const faultRounds = 3

// Bounds of one fault cycle.
const (
	// failpointHitWithin bounds the wait for an armed failpoint to kill
	// serve once the operation that reaches it was started.
	failpointHitWithin = 90 * time.Second
	// convergeWithin bounds the wait, after the restart, for every lease
	// to be as it says and the host to hold nothing nobody owns.
	convergeWithin = 2 * time.Minute
	// maxLive bounds the TestClusters kept between cycles.
	maxLive = 3
)

// expectation is what a TestCluster of the suite must come to.
type expectation int

const (
	// expectReady: bound, Ready, its kubeconfig Secret written.
	expectReady expectation = iota
	// expectGone: deleted; it and all it had must go.
	expectGone
	// expectLease: Ready until status.expiresAt, then gone.
	expectLease
)

// faultSuite drives one server through fault cycles and checks after each
// that it converged.
type faultSuite struct {
	h *harness
	s *server
	// baseline is the host with the server and its management plane
	// running, before any test cluster.
	baseline      hostState
	baselinePorts map[int]bool
	// expect says, by TestCluster name (namespace default), what each
	// TestCluster the suite made must come to; order is creation order.
	expect map[string]expectation
	order  []string
	// everBound records, for each cluster ever bound, the UID of the
	// TestCluster bound to it: a cluster is never bound to two.
	everBound map[string]types.UID
	n         int
}

// faultSequence is the sequence of failpoints to arm, one per cycle: each
// failpoint faultRounds times, round robin, or the sequence to replay.
func faultSequence(t *testing.T) []string {
	if replay := os.Getenv(faultSequenceEnv); replay != "" {
		seq := strings.Split(replay, ",")
		for _, fp := range seq {
			if !slices.Contains(failpoint.All, fp) {
				t.Fatalf("%s: no failpoint %q (there are %v)", faultSequenceEnv, fp, failpoint.All)
			}
		}
		return seq
	}
	var seq []string
	for range faultRounds {
		seq = append(seq, failpoint.All...)
	}
	return seq
}

// TestServerFaults SIGKILLs serve at each named failpoint, several times,
// restarts it, and checks that it converges: every lease ends as it says,
// and nothing is left on the host or in the management plane that no live
// object owns. Then it races claims, deletes and pools against each other.
func TestServerFaults(t *testing.T) {
	start := time.Now()
	h := newHarness(t)
	s := h.startServer("--max-clusters", "8")
	f := &faultSuite{h: h, s: s, expect: map[string]expectation{}, everBound: map[string]types.UID{}}
	// serve must run when the harness cleans up (a failed cycle may leave
	// it dead): it deletes what the TestClusters own.
	t.Cleanup(func() {
		if f.s.cmd.ProcessState != nil {
			f.s.env = nil
			f.s.start()
		}
	})
	ctx := t.Context()
	f.baseline, f.baselinePorts = snapshotHost(), listeningPorts()
	for _, obj := range []client.Object{template("fbare", 0), pool("fp", "fbare", 1, maxLive+2)} {
		if err := s.client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	s.waitPoolReady(ctx, t, "fp", 1)

	seq := faultSequence(t)
	t.Logf("fault sequence (replay with %s=%s)", faultSequenceEnv, strings.Join(seq, ","))
	cycles := time.Now()
	for i, fp := range seq {
		if !t.Run(fmt.Sprintf("%02d %s", i, strings.ReplaceAll(fp, "/", ".")), func(t *testing.T) { f.cycle(t, fp) }) {
			t.Fatalf("cycle %d (%s) failed; replay the sequence up to it with %s=%s", i, fp, faultSequenceEnv, strings.Join(seq[:i+1], ","))
		}
	}
	t.Logf("%d fault cycles took %s", len(seq), time.Since(cycles).Round(time.Second))

	t.Run("races", func(t *testing.T) { f.races(t) })
	t.Logf("the fault suite took %s", time.Since(start).Round(time.Second))
}

// cycle arms one failpoint by restarting serve with it, drives the
// operation that reaches it, waits for serve to die there, restarts serve
// without it and checks convergence.
func (f *faultSuite) cycle(t *testing.T, fp string) {
	defer f.in(t)()
	start := time.Now()
	ctx := t.Context()
	f.prepare(t, fp)
	f.kill(t, fp, func() { f.drive(t, fp) })
	armed := time.Since(start)
	// A claim recorded on a cluster when serve died is bound to it after
	// the restart.
	recorded := map[string]string{}
	if fp == failpoint.AdmissionAfterClaim {
		recorded = f.recordedClaims(t)
	}
	f.restart(t)
	f.converge(ctx, t)
	f.checkBound(t, recorded)
	t.Logf("killed at %s after %s; converged %s after the restart", fp, armed.Round(100*time.Millisecond), (time.Since(start) - armed).Round(100*time.Millisecond))
}

// recordedClaims returns the unbound claims whose claim a cluster records,
// with the cluster.
func (f *faultSuite) recordedClaims(t *testing.T) map[string]string {
	out := map[string]string{}
	for name, c := range f.h.with(t).clusters() {
		tc := claim(c.Labels[provision.LabelTestCluster], "")
		if tc.Name == "" || c.Labels[provision.LabelPool] == "" {
			continue
		}
		if err := f.s.client.Get(t.Context(), client.ObjectKeyFromObject(tc), tc); err == nil && tc.Spec.ClusterName == "" {
			out[tc.Name] = name
		}
	}
	return out
}

// checkBound checks that each claim is bound to its cluster.
func (f *faultSuite) checkBound(t *testing.T, want map[string]string) {
	for name, cluster := range want {
		tc := claim(name, "")
		if err := f.s.client.Get(t.Context(), client.ObjectKeyFromObject(tc), tc); err != nil {
			t.Fatal(err)
		}
		if tc.Spec.ClusterName != cluster {
			t.Errorf("claim %s was recorded on cluster %s when serve died; after the restart it is bound to %q", name, cluster, tc.Spec.ClusterName)
		}
	}
}

// prepare makes sure the operation that reaches fp has something to work
// on, with serve running without failpoints.
func (f *faultSuite) prepare(t *testing.T, fp string) {
	ctx := t.Context()
	switch fp {
	case failpoint.LocalDeleteAfterStop, failpoint.TestClusterBeforeUnfinalize:
		if len(f.live()) == 0 {
			f.createClaim(t, "c", time.Hour)
			f.converge(ctx, t)
		}
	case failpoint.AdmissionAfterClaim, failpoint.TestClusterBeforeSecret, failpoint.TestClusterBeforeReady:
		// A Ready spare, so the claim binds at once.
		f.s.waitPoolReady(ctx, t, "fp", 1)
	}
}

// drive starts the operation that reaches fp. Start-up failpoints need
// none: serve reaches them by starting.
func (f *faultSuite) drive(t *testing.T, fp string) {
	ctx := t.Context()
	switch fp {
	case failpoint.ServeBeforeLoad, failpoint.ProvisionAdopting:
	case failpoint.ProvisionAfterCreate:
		f.createRequest(t, "r", time.Hour)
	case failpoint.AdmissionAfterClaim, failpoint.TestClusterBeforeSecret, failpoint.AdmissionPoolCreate:
		f.createClaim(t, "c", time.Hour)
	case failpoint.TestClusterBeforeReady:
		// A short lease: it ends while serve is down or soon after; the
		// restarted server must end it.
		f.createClaim(t, "short", 5*time.Second)
	case failpoint.LocalDeleteAfterStop, failpoint.TestClusterBeforeUnfinalize:
		f.deleteOldest(t)
	case failpoint.ReaperAfterDelete:
		// A cluster with this server's label and an owner that is gone,
		// made behind the running server's back: only the reaper finds it.
		f.n++
		name := fmt.Sprintf("orphan-%02d", f.n)
		p := local.New(local.Options{StateDir: f.h.stateDir, Cache: kube.Cache{Dir: mustCacheDir(t)}, Supervisor: []string{ephemeraBin, "supervise"}})
		labels := map[string]string{provision.LabelServer: "ephemera", provision.LabelNamespace: "default", provision.LabelPool: "gone", provision.LabelPoolUID: "no-such-uid"}
		if err := p.Create(ctx, name, template("x", 0).Spec, provider.CreateOptions{Labels: labels}); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("no operation reaches failpoint %s", fp)
	}
}

// in makes the server's harness fail t (a subtest) until the returned
// func is called.
func (f *faultSuite) in(t *testing.T) func() {
	old := f.h.t
	f.h.t = t
	return func() { f.h.t = old }
}

// kill restarts serve with failpoint fp armed, runs drive once it is
// ready (unless serve died at fp on its way up: a start-up failpoint) and
// waits for serve to die at fp. serve is left dead.
func (f *faultSuite) kill(t *testing.T, fp string, drive func()) {
	f.s.kill()
	from := len(f.s.log())
	f.s.env = []string{failpoint.EnvVar + "=" + fp}
	f.s.launch()
	f.s.env = nil
	deadline := time.Now().Add(2 * time.Minute)
	dead := false
	// Ready, and knows the clusters of the last server: an orphan made
	// before would be found by the start-up, not by the reaper.
	loaded := func() bool {
		return f.s.ready() && strings.Contains(f.s.log()[from:], "Adopted the clusters this server created before")
	}
	for !dead && !loaded() {
		select {
		case err := <-f.s.exited:
			f.s.exited <- err // for the next reader
			dead = true
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve with failpoint %s armed not ready after 2m:\n%s", fp, tail(f.s.log(), 8000))
		}
	}
	if !dead {
		drive()
	}
	var err error
	select {
	case err = <-f.s.exited:
		f.s.exited <- err // for the next reader
	case <-time.After(failpointHitWithin):
		t.Fatalf("serve did not reach failpoint %s within %s: it is dead code, or the operation the suite drives no longer reaches it\n%s",
			fp, failpointHitWithin, tail(f.s.log(), 8000))
	}
	if log := f.s.log()[from:]; !strings.Contains(log, "failpoint "+fp+": killing the process") {
		t.Fatalf("serve exited (%v), and not at failpoint %s:\n%s", err, fp, tail(log, 8000))
	}
}

// restart starts serve without failpoints.
func (f *faultSuite) restart(t *testing.T) {
	t.Helper()
	f.s.env = nil
	f.s.start()
}

func (f *faultSuite) createClaim(t *testing.T, prefix string, ttl time.Duration) string {
	f.n++
	tc := claim(fmt.Sprintf("%s-%02d", prefix, f.n), "fp")
	tc.Spec.TTL = &metav1.Duration{Duration: ttl}
	return f.create(t, tc, ttl)
}

func (f *faultSuite) createRequest(t *testing.T, prefix string, ttl time.Duration) string {
	f.n++
	tc := &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%02d", prefix, f.n), Namespace: "default"},
		Spec:       v1alpha1.TestClusterSpec{TemplateRef: "fbare", TTL: &metav1.Duration{Duration: ttl}},
	}
	return f.create(t, tc, ttl)
}

func (f *faultSuite) create(t *testing.T, tc *v1alpha1.TestCluster, ttl time.Duration) string {
	if err := f.s.client.Create(t.Context(), tc); err != nil {
		t.Fatal(err)
	}
	f.expect[tc.Name] = expectReady
	if ttl < time.Hour {
		f.expect[tc.Name] = expectLease
	}
	f.order = append(f.order, tc.Name)
	return tc.Name
}

// live lists the TestClusters expected Ready, oldest first.
func (f *faultSuite) live() []string {
	var out []string
	for _, name := range f.order {
		if f.expect[name] == expectReady {
			out = append(out, name)
		}
	}
	return out
}

// deleteOldest deletes the oldest TestCluster expected Ready.
func (f *faultSuite) deleteOldest(t *testing.T) {
	live := f.live()
	if len(live) == 0 {
		t.Fatal("no TestCluster to delete")
	}
	name := live[0]
	if err := f.s.client.Delete(t.Context(), claim(name, "")); err != nil {
		t.Fatal(err)
	}
	f.expect[name] = expectGone
}

// converge waits until every TestCluster is as expected and the census
// finds nothing beyond what live objects own, then keeps at most maxLive
// TestClusters.
func (f *faultSuite) converge(ctx context.Context, t *testing.T) {
	t.Helper()
	f.waitConverged(ctx, t)
	if live := f.live(); len(live) > maxLive {
		for range len(live) - maxLive {
			f.deleteOldest(t)
		}
		f.waitConverged(ctx, t)
	}
}

func (f *faultSuite) waitConverged(ctx context.Context, t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(convergeWithin)
	for {
		problems := f.census(ctx, t)
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged %s after the restart:\n  %s\nserve log:\n%s", convergeWithin, strings.Join(problems, "\n  "), tail(f.s.log(), 12000))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// census lists what is not as it should be: TestClusters not as their
// leases say, clusters, processes, ports, host resources and Secrets that
// no live object owns. A cluster bound twice fails the test at once.
func (f *faultSuite) census(ctx context.Context, t *testing.T) []string {
	t.Helper()
	var problems []string
	var tcs v1alpha1.TestClusterList
	if err := f.s.client.List(ctx, &tcs); err != nil {
		return []string{err.Error()}
	}
	var pools v1alpha1.ClusterPoolList
	if err := f.s.client.List(ctx, &pools); err != nil {
		return []string{err.Error()}
	}
	var secrets corev1.SecretList
	if err := f.s.client.List(ctx, &secrets, client.HasLabels{provision.LabelTestCluster}); err != nil {
		return []string{err.Error()}
	}
	clusters := f.h.with(t).clusters()

	// TestClusters: as their leases say; a cluster bound to one only.
	byUID := map[types.UID]*v1alpha1.TestCluster{}
	boundTo := map[string]string{}
	seen := map[string]bool{}
	for i := range tcs.Items {
		tc := &tcs.Items[i]
		byUID[tc.UID] = tc
		key := tc.Namespace + "/" + tc.Name
		if name := tc.Spec.ClusterName; name != "" {
			if other, ok := boundTo[name]; ok {
				t.Fatalf("cluster %s is bound to %s and %s", name, other, key)
			}
			boundTo[name] = key
			if uid, ok := f.everBound[name]; ok && uid != tc.UID {
				t.Fatalf("cluster %s was bound to TestCluster UID %s, and now to %s (%s)", name, uid, key, tc.UID)
			}
			f.everBound[name] = tc.UID
		}
		exp, ok := f.expect[tc.Name]
		if tc.Namespace != "default" || !ok {
			problems = append(problems, fmt.Sprintf("TestCluster %s was not made by the suite (or the races)", key))
			continue
		}
		seen[tc.Name] = true
		ready := tc.Status.Phase == v1alpha1.TestClusterReady && tc.Spec.ClusterName != "" && tc.Status.KubeconfigSecret != ""
		switch {
		case exp == expectGone:
			problems = append(problems, fmt.Sprintf("TestCluster %s was deleted and is still there (phase %s, finalizers %v)", key, tc.Status.Phase, tc.Finalizers))
		case exp == expectLease && tc.Status.ExpiresAt != nil && time.Now().After(tc.Status.ExpiresAt.Add(time.Second)):
			problems = append(problems, fmt.Sprintf("TestCluster %s: its lease ended at %s and it is still there", key, tc.Status.ExpiresAt.UTC().Format(time.RFC3339)))
		case !ready:
			problems = append(problems, fmt.Sprintf("TestCluster %s is not Ready: phase %s, cluster %q, Ready %q", key, tc.Status.Phase, tc.Spec.ClusterName, readyReason(tc)))
		case clusters[tc.Spec.ClusterName].Phase != "Running":
			problems = append(problems, fmt.Sprintf("TestCluster %s is Ready, and its cluster %s is %+v", key, tc.Spec.ClusterName, clusters[tc.Spec.ClusterName]))
		}
	}
	for name, exp := range f.expect {
		if exp == expectReady && !seen[name] {
			problems = append(problems, fmt.Sprintf("TestCluster default/%s is gone; it should be Ready", name))
		}
	}

	// Clusters: each bound to a live TestCluster by its own record, or a
	// spare of a live pool, within the pool's maxSize.
	livePools := map[types.UID]*v1alpha1.ClusterPool{}
	for i := range pools.Items {
		if pools.Items[i].DeletionTimestamp.IsZero() {
			livePools[pools.Items[i].UID] = &pools.Items[i]
		}
	}
	members := map[types.UID]int{}
	for _, name := range slices.Sorted(maps.Keys(clusters)) {
		c := clusters[name]
		owner := byUID[types.UID(c.Labels[provision.LabelTestClusterUID])]
		pool := livePools[types.UID(c.Labels[provision.LabelPoolUID])]
		switch {
		case owner != nil && owner.Spec.ClusterName == name:
			if pool != nil {
				members[pool.UID]++
			}
		case owner == nil && c.Labels[provision.LabelTestClusterUID] == "" && pool != nil:
			members[pool.UID]++
		default:
			problems = append(problems, fmt.Sprintf("cluster %s (%s) is owned by no live TestCluster or pool: labels %v", name, c.Phase, c.Labels))
		}
	}
	for uid, n := range members {
		if p := livePools[uid]; int32(n) > p.Spec.MaxSizeOrDefault() {
			problems = append(problems, fmt.Sprintf("pool %s has %d clusters, maxSize %d", p.Name, n, p.Spec.MaxSizeOrDefault()))
		}
	}
	// Nothing else in the clusters dir: no half-made or half-removed dir.
	entries, _ := os.ReadDir(filepath.Join(f.h.stateDir, "clusters"))
	for _, e := range entries {
		if _, ok := clusters[e.Name()]; !ok {
			problems = append(problems, "left in the clusters dir: "+e.Name())
		}
	}

	// Processes of clusters that are gone.
	clustersDir := filepath.Join(f.h.stateDir, "clusters") + "/"
	for _, p := range processesUnder(clustersDir) {
		_, rest, _ := strings.Cut(p, clustersDir)
		name := rest[:strings.IndexAny(rest+" ", "/ ")]
		if _, ok := clusters[name]; !ok {
			problems = append(problems, "process of cluster "+name+" that is gone: "+tail(p, 200))
		}
	}
	// The host: new cluster processes only of clusters that are there, and
	// nothing else new. (Network and mount namespaces are left out: the
	// management plane's pods make and drop them. A leaked one keeps a
	// process, a mount or a file in /run/netns, which are counted.)
	for _, item := range snapshotHost().leftSince(f.baseline) {
		kind, what, _ := strings.Cut(item, ": ")
		switch kind {
		case "namespaces":
			continue
		case "processes":
			if strings.Contains(what, clustersDir) {
				continue // looked at above
			}
		}
		problems = append(problems, "new on the host: "+item)
	}
	// Listening ports: only those of the clusters there.
	owned := map[int]bool{}
	for name := range clusters {
		var plan struct {
			Ports map[string]int `json:"ports"`
		}
		if b, err := os.ReadFile(filepath.Join(f.h.clusterDir(name), "cluster.json")); err == nil && json.Unmarshal(b, &plan) == nil {
			for _, p := range plan.Ports {
				owned[p] = true
			}
		}
	}
	for p := range listeningPorts() {
		if !f.baselinePorts[p] && !owned[p] {
			problems = append(problems, fmt.Sprintf("port %d listens, and no cluster there has it", p))
		}
	}
	// Kubeconfig Secrets only of live TestClusters.
	for _, sec := range secrets.Items {
		ref := metav1.GetControllerOf(&sec)
		if ref == nil || byUID[ref.UID] == nil {
			problems = append(problems, fmt.Sprintf("Secret %s/%s belongs to no live TestCluster (controller %v)", sec.Namespace, sec.Name, ref))
		}
	}
	return problems
}

// listeningPorts lists the TCP ports something listens on, IPv4 and IPv6.
func listeningPorts() map[int]bool {
	const listen = "0A"
	out := map[int]bool{}
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != listen {
				continue
			}
			local := fields[1]
			if p, err := strconv.ParseInt(local[strings.LastIndexByte(local, ':')+1:], 16, 32); err == nil {
				out[int(p)] = true
			}
		}
	}
	return out
}

// races races claims, deletes and pools against the server's binding, with
// the server of the fault cycles. The census after each finds any double
// binding or leak.
func (f *faultSuite) races(t *testing.T) {
	defer f.in(t)()
	ctx := t.Context()
	c := f.s.client
	for _, name := range f.live() {
		f.expect[name] = expectGone
		if err := c.Delete(ctx, claim(name, "")); err != nil {
			t.Fatal(err)
		}
	}
	// Every short lease of the cycles ended, across the kills.
	for name, exp := range f.expect {
		if exp == expectLease {
			f.expect[name] = expectGone
		}
	}
	f.waitConverged(ctx, t)

	t.Run("two claims race for the one spare of a pool: one binds, the other waits", func(t *testing.T) {
		defer f.in(t)()
		if err := c.Create(ctx, pool("duo", "fbare", 1, 1)); err != nil {
			t.Fatal(err)
		}
		f.s.waitPoolReady(ctx, t, "duo", 1)
		spare := f.h.with(t).poolClusters("duo")
		if len(spare) != 1 {
			t.Fatalf("pool duo of maxSize 1 has clusters %v", spare)
		}
		a, b := claim("duo-a", "duo"), claim("duo-b", "duo")
		var g errgroup.Group
		for _, tc := range []*v1alpha1.TestCluster{a, b} {
			f.expect[tc.Name], f.order = expectReady, append(f.order, tc.Name)
			g.Go(func() error { return c.Create(ctx, tc) })
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		var winner, loser *v1alpha1.TestCluster
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := waitFor(wctx, func() (bool, string) {
			for _, pair := range [][2]*v1alpha1.TestCluster{{a, b}, {b, a}} {
				if err := c.Get(ctx, client.ObjectKeyFromObject(pair[0]), pair[0]); err != nil {
					return false, err.Error()
				}
				if pair[0].Status.Phase == v1alpha1.TestClusterReady {
					winner, loser = pair[0], pair[1]
				}
			}
			return winner != nil, fmt.Sprintf("neither claim is Ready: %s %s, %s %s", a.Name, a.Status.Phase, b.Name, b.Status.Phase)
		}); err != nil {
			t.Fatal(err)
		}
		if winner.Spec.ClusterName != spare[0] {
			t.Errorf("%s is bound to %s, not to the spare %s", winner.Name, winner.Spec.ClusterName, spare[0])
		}
		if got := f.h.with(t).clusters()[spare[0]].Labels; got[provision.LabelTestCluster] != winner.Name || got[provision.LabelTestClusterUID] != string(winner.UID) {
			t.Errorf("the spare's labels %v do not name the winner %s (%s)", got, winner.Name, winner.UID)
		}
		// The loser waits first in the pool's queue, as long as the winner
		// holds the pool's only cluster.
		for range 10 {
			if err := c.Get(ctx, client.ObjectKeyFromObject(loser), loser); err != nil {
				t.Fatal(err)
			}
			if loser.Spec.ClusterName != "" || loser.Status.Phase != v1alpha1.TestClusterQueued {
				t.Fatalf("%s, which lost the race, is bound to %q (phase %s) while %s holds the pool's only cluster", loser.Name, loser.Spec.ClusterName, loser.Status.Phase, winner.Name)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if loser.Status.QueuePosition != 1 {
			t.Errorf("%s waits at queue position %d, want 1", loser.Name, loser.Status.QueuePosition)
		}
		// The winner gives its cluster back: the loser gets a new one.
		f.expect[winner.Name] = expectGone
		if err := c.Delete(ctx, winner); err != nil {
			t.Fatal(err)
		}
		f.waitConverged(ctx, t)
		if err := c.Get(ctx, client.ObjectKeyFromObject(loser), loser); err != nil {
			t.Fatal(err)
		}
		if loser.Spec.ClusterName == spare[0] {
			t.Errorf("%s got the winner's returned cluster %s; returned clusters are deleted", loser.Name, spare[0])
		}
		f.expect[loser.Name] = expectGone
		for _, obj := range []client.Object{loser, pool("duo", "", 1, 1)} {
			if err := c.Delete(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
		f.waitConverged(ctx, t)
	})

	t.Run("a claim deleted while it is being bound gets nothing and leaks nothing", func(t *testing.T) {
		defer f.in(t)()
		// Deterministically: serve dies between recording the claim on the
		// spare and setting spec.clusterName; the claim is deleted while
		// serve is down.
		f.s.waitPoolReady(ctx, t, "fp", 1)
		var name string
		f.kill(t, failpoint.AdmissionAfterClaim, func() { name = f.createClaim(t, "unwanted", time.Hour) })
		var recorded string
		for cl, v := range f.h.with(t).clusters() {
			if v.Labels[provision.LabelTestCluster] == name {
				recorded = cl
			}
		}
		tc := claim(name, "fp")
		if err := c.Get(ctx, client.ObjectKeyFromObject(tc), tc); err != nil {
			t.Fatal(err)
		}
		if recorded == "" || tc.Spec.ClusterName != "" {
			t.Fatalf("serve died at %s, and the claim is recorded on cluster %q and bound to %q: not in the window the test is about", failpoint.AdmissionAfterClaim, recorded, tc.Spec.ClusterName)
		}
		f.expect[name] = expectGone
		if err := c.Delete(ctx, tc); err != nil {
			t.Fatal(err)
		}
		f.restart(t)
		f.waitConverged(ctx, t)

		// And live: claims deleted a little after they were made, each
		// later than the one before, across the bind.
		f.s.waitPoolReady(ctx, t, "fp", 1)
		for i := range 8 {
			name := f.createClaim(t, "fleeting", time.Hour)
			time.Sleep(time.Duration(i) * 15 * time.Millisecond)
			f.expect[name] = expectGone
			if err := c.Delete(ctx, claim(name, "")); err != nil {
				t.Fatal(err)
			}
		}
		f.waitConverged(ctx, t)
	})

	t.Run("a claim recorded on a cluster when serve died is bound to it after the restart, also when the cluster must be restarted first", func(t *testing.T) {
		defer f.in(t)()
		// A host crash: serve dies as it recorded the claim, and the
		// cluster's processes die with it. The restarted server restarts
		// the cluster on its data, which takes a while: meanwhile the
		// claim waits for that cluster, which is neither deleted nor
		// replaced.
		f.s.waitPoolReady(ctx, t, "fp", 1)
		var name string
		f.kill(t, failpoint.AdmissionAfterClaim, func() { name = f.createClaim(t, "crash", time.Hour) })
		recorded := f.recordedClaims(t)
		if recorded[name] == "" {
			t.Fatalf("serve died at %s, and no cluster records claim %s", failpoint.AdmissionAfterClaim, name)
		}
		f.h.with(t).killCluster(t, recorded[name])
		f.restart(t)
		f.waitConverged(ctx, t)
		f.checkBound(t, recorded)
	})

	t.Run("a pool deleted or scaled down while its members are being created leaks nothing", func(t *testing.T) {
		defer f.in(t)()
		building := func(poolName string, n int) {
			t.Helper()
			wctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := waitFor(wctx, func() (bool, string) {
				got := f.h.with(t).poolClusters(poolName)
				return len(got) >= n, fmt.Sprintf("pool %s has clusters %v", poolName, got)
			}); err != nil {
				t.Fatal(err)
			}
		}
		// Deleted while its members are being created.
		if err := c.Create(ctx, pool("doomed", "fbare", 2, 2)); err != nil {
			t.Fatal(err)
		}
		building("doomed", 1)
		if err := c.Delete(ctx, pool("doomed", "", 0, 1)); err != nil {
			t.Fatal(err)
		}
		// Scaled down while its members are being created.
		if err := c.Create(ctx, pool("shrink", "fbare", 2, 2)); err != nil {
			t.Fatal(err)
		}
		building("shrink", 1)
		p := pool("shrink", "", 0, 1)
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			t.Fatal(err)
		}
		base := p.DeepCopy()
		p.Spec.MinReady, p.Spec.MaxSize = ptr(int32(0)), ptr(int32(1))
		if err := c.Patch(ctx, p, client.MergeFrom(base)); err != nil {
			t.Fatal(err)
		}
		f.waitConverged(ctx, t)
		// Deleted while serve is down, killed as the pool's first member
		// was handed to the provisioner.
		f.s.waitPoolReady(ctx, t, "fp", 1)
		f.kill(t, failpoint.AdmissionPoolCreate, func() {
			if err := c.Create(ctx, pool("dropped", "fbare", 2, 2)); err != nil {
				t.Fatal(err)
			}
		})
		for _, name := range []string{"dropped", "shrink"} {
			if err := c.Delete(ctx, pool(name, "", 0, 1)); err != nil {
				t.Fatal(err)
			}
		}
		f.restart(t)
		f.waitConverged(ctx, t)
		for _, name := range []string{"doomed", "dropped", "shrink"} {
			if got := f.h.with(t).poolClusters(name); len(got) > 0 {
				t.Errorf("clusters of deleted pool %s: %v", name, got)
			}
		}
	})
}
