package provision

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/fake"
)

func running(name string, labels map[string]string) provider.Cluster {
	return provider.Cluster{Name: name, Phase: provider.PhaseRunning, Labels: labels}
}

// ready puts a Ready job for name into r, as a finished create would.
func ready(r *Provisioner, name string, labels map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	done := make(chan struct{})
	close(done)
	r.jobs[name] = &job{status: Status{Name: name, State: Ready, Labels: labels}, cancel: func() {}, done: done}
}

func waitState(t *testing.T, r *Provisioner, name string, want State) Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, ok := r.Get(name)
		if ok && st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s: state %q (known %t), want %q", name, st.State, ok, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLoadDeletesNothingAndRestartsBrokenClusters(t *testing.T) {
	mine := map[string]string{LabelServer: "s"}
	broken := running("broken", mine)
	broken.Phase = provider.PhaseBroken
	f := fake.New(running("ok", mine), broken, running("other", map[string]string{LabelServer: "someone-else"}))
	r := New(f, Options{Log: logr.Discard(), Create: fake.Create, Adopt: fake.Adopt})
	if r.Loaded() {
		t.Fatal("Loaded before Load")
	}
	n, err := r.Load(t.Context(), map[string]string{LabelServer: "s"})
	if err != nil || n != 2 {
		t.Fatalf("Load = %d, %v; want 2 adopted", n, err)
	}
	if !r.Loaded() {
		t.Error("not Loaded after Load")
	}
	waitState(t, r, "ok", Ready)
	// Its processes were gone: restarted on its data, not rebuilt.
	waitState(t, r, "broken", Ready)
	if _, known := r.Get("other"); known {
		t.Error("adopted another server's cluster")
	}
	if d := f.Deleted(); len(d) != 0 {
		t.Errorf("Load deleted %v; it must delete nothing", d)
	}
	if got := f.Restarted(); len(got) != 1 || got[0] != "broken" {
		t.Errorf("restarted %v, want [broken]", got)
	}
}

func TestAdoptedClusterThatStaysBrokenIsKept(t *testing.T) {
	broken := running("broken", map[string]string{LabelServer: "s"})
	broken.Phase = provider.PhaseBroken
	f := fake.New(broken)
	failRestart := func(ctx context.Context, p provider.Provider, name string, opts lifecycle.CreateOptions) (*provider.Cluster, error) {
		f.SetPhase(name, provider.PhaseBroken) // the restart did not help
		return fake.Adopt(ctx, p, name, opts)
	}
	r := New(f, Options{Log: logr.Discard(), Create: fake.Create, Adopt: failRestart})
	if _, err := r.Load(t.Context(), map[string]string{LabelServer: "s"}); err != nil {
		t.Fatal(err)
	}
	if st := waitState(t, r, "broken", Failed); st.Err == nil {
		t.Error("Failed without a reason")
	}
	if !f.Has("broken") {
		t.Error("a cluster that could not be adopted was deleted; its owner decides")
	}
}

func TestObserveAllTurnsDeadClustersLostAndBack(t *testing.T) {
	f := fake.New(running("c", nil), running("gone", nil))
	var notified []string
	var mu sync.Mutex
	r := New(f, Options{Log: logr.Discard(), Notify: func(s Status) { mu.Lock(); notified = append(notified, s.Name+"="+string(s.State)); mu.Unlock() }})
	ready(r, "c", nil)
	ready(r, "gone", nil)
	_ = f.Delete(t.Context(), "gone")

	r.ObserveAll(t.Context())
	if st, _ := r.Get("gone"); st.State != Lost || st.Err == nil {
		t.Errorf("a cluster the provider no longer has: %+v, want Lost with a reason", st)
	}
	if st, _ := r.Get("c"); st.State != Ready {
		t.Errorf("a running cluster: %s, want Ready", st.State)
	}
	f.SetPhase("c", provider.PhaseBroken)
	r.ObserveAll(t.Context())
	if st, _ := r.Get("c"); st.State != Lost {
		t.Errorf("a Broken cluster: %s, want Lost", st.State)
	}
	f.SetPhase("c", provider.PhaseRunning)
	r.ObserveAll(t.Context())
	if st, _ := r.Get("c"); st.State != Ready {
		t.Errorf("a cluster running again: %s, want Ready", st.State)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"gone=Lost", "c=Lost", "c=Ready"}; len(notified) != 3 || notified[0] != want[0] || notified[1] != want[1] || notified[2] != want[2] {
		t.Errorf("notified %v, want %v", notified, want)
	}
}

func TestClaimRecordsTheClaimAndRefusesDeadClusters(t *testing.T) {
	pool := map[string]string{LabelServer: "s", LabelPool: "ci"}
	f := fake.New(running("c1", pool), running("c2", pool))
	r := New(f, Options{Log: logr.Discard()})
	ready(r, "c1", pool)
	ready(r, "c2", pool)
	tc := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: "job", UID: "uid-job"}}
	if err := r.Claim(t.Context(), "c1", tc); err != nil {
		t.Fatal(err)
	}
	c, _ := f.Get(t.Context(), "c1")
	st, _ := r.Get("c1")
	for _, labels := range []map[string]string{c.Labels, st.Labels} {
		if labels[LabelTestClusterUID] != "uid-job" || labels[LabelTestCluster] != "job" || labels[LabelPool] != "ci" {
			t.Errorf("labels after Claim: %v, want the pool's and the claim's", labels)
		}
	}
	f.SetPhase("c2", provider.PhaseBroken)
	if err := r.Claim(t.Context(), "c2", tc); !errors.Is(err, ErrNotUsable) {
		t.Errorf("claiming a Broken cluster: %v, want ErrNotUsable", err)
	}
	if st, _ := r.Get("c2"); st.State != Lost {
		t.Errorf("a Broken cluster found by Claim: %s, want Lost", st.State)
	}
	if err := r.Claim(t.Context(), "nosuch", tc); !errors.Is(err, ErrNotUsable) {
		t.Errorf("claiming an unknown cluster: %v, want ErrNotUsable", err)
	}
}

func TestFailedDeletesStayDeletingAndReleaseRetries(t *testing.T) {
	f := fake.New(running("c", nil))
	f.FailDeletes(2)
	r := New(f, Options{Log: logr.Discard()})
	ready(r, "c", nil)
	if err := r.Delete(t.Context(), "c"); err == nil {
		t.Fatal("Delete succeeded; the fake was told to fail it")
	}
	if st, _ := r.Get("c"); st.State != Deleting {
		t.Fatalf("after a failed delete: %s, want Deleting (never bindable)", st.State)
	}
	if err := r.Claim(t.Context(), "c", &v1alpha1.TestCluster{}); !errors.Is(err, ErrNotUsable) {
		t.Errorf("claiming a cluster whose delete failed: %v, want ErrNotUsable", err)
	}
	r.Release("c")
	r.Release("c") // a second release joins the first
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, known := r.Get("c"); !known {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Release did not retry the delete until it succeeded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := f.Deleted(); len(d) != 1 {
		t.Errorf("deletes %v, want one that succeeded", d)
	}
}
