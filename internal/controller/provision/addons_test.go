package provision

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/controller-runtime/pkg/client"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/fake"
)

var withAddons = v1alpha1.ClusterTemplateSpec{Addons: []v1alpha1.AddonPhase{{Name: "operators"}, {Name: "apps"}}}

// addonsCreate stands in for lifecycle.Create with addons: it creates the
// cluster with the fake, then reports the phases as the engine would
// (the engine itself is tested against real clusters in internal/addons),
// failing the phase named fail. It records the options it was given and
// what the provider recorded on the cluster while the phases ran.
type addonsCreate struct {
	fail    string
	release chan struct{} // when set, the first phase waits for it

	mu           sync.Mutex
	opts         lifecycle.CreateOptions
	labelsDuring map[string]string
}

func (a *addonsCreate) create(ctx context.Context, p provider.Provider, name string, spec v1alpha1.ClusterTemplateSpec, opts lifecycle.CreateOptions) (*provider.Cluster, error) {
	c, err := fake.Create(ctx, p, name, spec, opts)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.opts = opts
	a.labelsDuring = c.Labels
	a.mu.Unlock()
	for i, ph := range spec.Addons {
		opts.Addons.OnPhase(addons.PhaseEvent{Phase: ph.Name, Kind: addons.PhaseStarted})
		if i == 0 && a.release != nil {
			select {
			case <-a.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if ph.Name == a.fail {
			pe := &addons.PhaseError{Phase: ph.Name, Item: "Deployment web/web", Reason: "not Available: pod web-x: ImagePullBackOff"}
			opts.Addons.OnPhase(addons.PhaseEvent{Phase: ph.Name, Kind: addons.PhaseFailed, Duration: time.Second, Err: pe})
			_ = p.Delete(ctx, name)
			return nil, &lifecycle.CreateError{Name: name, Err: pe, Deleted: true}
		}
		opts.Addons.OnPhase(addons.PhaseEvent{Phase: ph.Name, Kind: addons.PhaseReady, Duration: time.Duration(i+1) * time.Second})
	}
	return p.Get(ctx, name)
}

type phaseLog struct {
	mu     sync.Mutex
	events []string
}

func (l *phaseLog) add(st Status, ev addons.PhaseEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, st.Name+" "+ev.Phase+" "+ev.Kind+" current="+st.Addons.Current)
}

func (l *phaseLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

func TestEnsureInstallsAddonsBeforeReady(t *testing.T) {
	f := fake.New()
	a := &addonsCreate{release: make(chan struct{})}
	var log phaseLog
	reader := fakeclient.NewClientBuilder().Build()
	r := New(f, Options{Log: logr.Discard(), Create: a.create, Adopt: fake.Adopt, Reader: reader, OnAddonPhase: log.add})
	labels := map[string]string{LabelServer: "s", LabelNamespace: "team-a"}
	st := r.Ensure("c", withAddons, labels, AddonInputs{Namespace: "team-a", Labels: map[string]string{"pr": "42"}})
	if st.Labels[LabelAddons] != AddonsPending {
		t.Errorf("labels at Ensure: %v, want %s=%s", st.Labels, LabelAddons, AddonsPending)
	}
	if labels[LabelAddons] != "" {
		t.Error("Ensure changed the caller's labels")
	}
	// While the first phase runs, the cluster is not Ready.
	deadline := time.Now().Add(10 * time.Second)
	for st, _ = r.Get("c"); st.Addons.Current != "operators"; st, _ = r.Get("c") {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v never showed phase operators under way", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st.State != Creating {
		t.Errorf("state while a phase runs: %s, want Creating", st.State)
	}
	close(a.release)
	st = waitState(t, r, "c", Ready)
	want := AddonsStatus{Phases: []string{"operators", "apps"}, Ready: []addons.PhaseResult{{Name: "operators", Duration: time.Second}, {Name: "apps", Duration: 2 * time.Second}}}
	if d := cmp.Diff(want, st.Addons, cmpErrors); d != "" {
		t.Errorf("Addons (-want +got):\n%s", d)
	}
	// The create saw pending; after it, the provider's record says ready,
	// so that a restarted server adopts the cluster.
	if a.labelsDuring[LabelAddons] != AddonsPending {
		t.Errorf("labels recorded during the create: %v, want %s=%s", a.labelsDuring, LabelAddons, AddonsPending)
	}
	c, _ := f.Get(t.Context(), "c")
	for _, l := range []map[string]string{c.Labels, st.Labels} {
		if l[LabelAddons] != AddonsReady || l[LabelNamespace] != "team-a" {
			t.Errorf("labels after the addons: %v, want %s=%s and the others kept", l, LabelAddons, AddonsReady)
		}
	}
	// Server mode: sources in the owner's namespace, read with the
	// server's reader; templates see the owner's labels.
	got := a.opts.Addons
	if !got.Sources.ServerMode || got.Sources.Namespace != "team-a" || got.Sources.Reader != client.Reader(reader) || got.Sources.Dir != "" {
		t.Errorf("Sources = %+v, want server mode in team-a with the reader", got.Sources)
	}
	if d := cmp.Diff(map[string]string{"pr": "42"}, got.Labels); d != "" {
		t.Errorf("fact labels (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"c operators Started current=operators", "c operators Ready current=", "c apps Started current=apps", "c apps Ready current="}, log.get()); d != "" {
		t.Errorf("phase events (-want +got):\n%s", d)
	}
}

var cmpErrors = cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) || errors.Is(b, a) })

func TestEnsureWithFailingAddons(t *testing.T) {
	f := fake.New()
	a := &addonsCreate{fail: "apps"}
	var log phaseLog
	r := New(f, Options{Log: logr.Discard(), Create: a.create, Adopt: fake.Adopt, OnAddonPhase: log.add})
	r.Ensure("c", withAddons, nil, AddonInputs{})
	st := waitState(t, r, "c", Failed)
	var pe *addons.PhaseError
	if !errors.As(st.Addons.Err, &pe) || pe.Phase != "apps" {
		t.Errorf("Addons.Err = %v, want the PhaseError of apps", st.Addons.Err)
	}
	if !errors.As(st.Err, &pe) {
		t.Errorf("Err = %v, want one wrapping the PhaseError", st.Err)
	}
	if st.Addons.Current != "" || len(st.Addons.Ready) != 1 {
		t.Errorf("Addons = %+v, want operators ready and nothing under way", st.Addons)
	}
	if f.Has("c") {
		t.Error("the cluster whose addons failed is still there")
	}
	if got := log.get(); len(got) != 4 || got[3] != "c apps Failed current=" {
		t.Errorf("phase events %v, want the last one apps Failed", got)
	}
}

func TestEnsureWithAddonsThatCannotBeRead(t *testing.T) {
	f := fake.New()
	refuse := func(context.Context, provider.Provider, string, v1alpha1.ClusterTemplateSpec, lifecycle.CreateOptions) (*provider.Cluster, error) {
		return nil, errors.Join(lifecycle.ErrAddons, errors.New("phase operators: paths on the server's disk are refused"))
	}
	r := New(f, Options{Log: logr.Discard(), Create: refuse, Adopt: fake.Adopt})
	r.Ensure("c", withAddons, nil, AddonInputs{})
	st := waitState(t, r, "c", Failed)
	if !errors.Is(st.Addons.Err, lifecycle.ErrAddons) {
		t.Errorf("Addons.Err = %v, want the ErrAddons of the create", st.Addons.Err)
	}

	// A failure that is not the addons' leaves Addons.Err alone.
	fail := func(context.Context, provider.Provider, string, v1alpha1.ClusterTemplateSpec, lifecycle.CreateOptions) (*provider.Cluster, error) {
		return nil, lifecycle.ErrNotReady
	}
	r = New(f, Options{Log: logr.Discard(), Create: fail, Adopt: fake.Adopt})
	r.Ensure("d", withAddons, nil, AddonInputs{})
	if st := waitState(t, r, "d", Failed); st.Addons.Err != nil {
		t.Errorf("Addons.Err = %v after a create that never reached the addons", st.Addons.Err)
	}
}

func TestLoadRefusesClustersWhoseAddonsWereInterrupted(t *testing.T) {
	mine := func(addonsState string) map[string]string {
		return map[string]string{LabelServer: "s", LabelAddons: addonsState}
	}
	f := fake.New(running("pending", mine(AddonsPending)), running("done", mine(AddonsReady)))
	r := New(f, Options{Log: logr.Discard(), Create: fake.Create, Adopt: fake.Adopt})
	if _, err := r.Load(t.Context(), map[string]string{LabelServer: "s"}); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, r, "pending", Failed)
	if !errors.Is(st.Err, ErrAddonsInterrupted) || !errors.Is(st.Addons.Err, ErrAddonsInterrupted) || !st.Adopted {
		t.Errorf("pending: %+v, want Failed, adopted, with ErrAddonsInterrupted", st)
	}
	if !f.Has("pending") {
		t.Error("Load deleted a cluster; its owner decides")
	}
	waitState(t, r, "done", Ready)
}
