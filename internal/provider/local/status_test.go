package local

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ephemera-dev/ephemera/internal/provider"
)

func TestPhaseOf(t *testing.T) {
	ready := provider.Component{Name: "etcd", Ready: true}
	running := &supervisorStatus{Phase: supervisorRunning}
	unhealthy := func(failures int) provider.Component {
		return provider.Component{Name: "kube-scheduler", Failures: failures, Message: "not healthy"}
	}
	restarting := func(failures int) provider.Component {
		return provider.Component{Name: "kube-scheduler", Failures: failures, Restarts: 1, Message: "not running: signal: killed"}
	}
	tests := []struct {
		name    string
		o       observation
		phase   provider.Phase
		message string // substring; "" means empty
	}{
		{"deleting wins over everything", observation{deleting: true, planned: true, supervised: true, status: running}, provider.PhaseDeleting, "removing"},
		{"deleting an unplanned dir", observation{deleting: true}, provider.PhaseDeleting, "removing"},
		{"creating, not planned", observation{creating: true}, provider.PhaseCreating, "certificates"},
		{"not planned, nobody creating", observation{}, provider.PhaseBroken, "before the cluster was planned"},
		{"planned, supervisor starting", observation{creating: true, planned: true}, provider.PhaseCreating, "starting the supervisor"},
		{"processes gone", observation{planned: true, status: running, components: []provider.Component{ready}}, provider.PhaseBroken, "processes are gone"},
		{"processes gone, even while healthy before", observation{planned: true, status: &supervisorStatus{Phase: supervisorRunning}}, provider.PhaseBroken, "processes are gone"},
		{"never supervised", observation{planned: true}, provider.PhaseBroken, "before the cluster started"},
		{"supervised, no status yet", observation{planned: true, supervised: true, components: []provider.Component{{Name: "etcd", Message: "not started"}}}, provider.PhaseCreating, "etcd not started"},
		{"supervisor starting", observation{planned: true, supervised: true, status: &supervisorStatus{Phase: supervisorStarting}, components: []provider.Component{unhealthy(5)}}, provider.PhaseCreating, "kube-scheduler not healthy"},
		{"start-up failed", observation{planned: true, supervised: true, status: &supervisorStatus{Phase: supervisorFailed, Message: "etcd did not become healthy"}}, provider.PhaseBroken, "etcd did not become healthy"},
		{"running, all ready", observation{planned: true, supervised: true, status: running, components: []provider.Component{ready}}, provider.PhaseRunning, ""},
		{"one failed check", observation{planned: true, supervised: true, status: running, components: []provider.Component{ready, unhealthy(1)}}, provider.PhaseRunning, "degraded: kube-scheduler not healthy"},
		{"two failed checks", observation{planned: true, supervised: true, status: running, components: []provider.Component{ready, unhealthy(brokenAfterFailures - 1)}}, provider.PhaseRunning, "degraded: kube-scheduler"},
		{"being restarted", observation{planned: true, supervised: true, status: running, components: []provider.Component{ready, restarting(0)}}, provider.PhaseRunning, "degraded: kube-scheduler not running: signal: killed"},
		{"restarted, not probed healthy yet", observation{planned: true, supervised: true, status: running, components: []provider.Component{ready, {Name: "kube-scheduler", Restarts: 1, Failures: 1, Message: "not healthy yet"}}}, provider.PhaseRunning, "degraded"},
		{"failed N checks in a row", observation{planned: true, supervised: true, status: running, components: []provider.Component{ready, unhealthy(brokenAfterFailures)}}, provider.PhaseBroken, "kube-scheduler failed 3 health checks in a row (not healthy)"},
		{"crash loop past N checks", observation{planned: true, supervised: true, status: running, components: []provider.Component{ready, restarting(brokenAfterFailures + 4)}}, provider.PhaseBroken, "kube-scheduler failed 7 health checks in a row (not running: signal: killed)"},
		{"processes gone while create lock held", observation{creating: true, planned: true, status: running}, provider.PhaseCreating, "starting the supervisor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phase, msg := phaseOf(tt.o)
			if phase != tt.phase {
				t.Errorf("phase = %s (%q), want %s", phase, msg, tt.phase)
			}
			if tt.message == "" && msg != "" || !strings.Contains(msg, tt.message) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.message)
			}
		})
	}
}

// TestCheckHealthCountsFailuresInARow probes a real HTTP endpoint that
// fails on demand: each failed check adds one to the component's failures
// in status.json, a healthy one resets them, and the cluster turns Broken
// only at brokenAfterFailures.
func TestCheckHealthCountsFailuresInARow(t *testing.T) {
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "not ok", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	p := newTestProvider(t)
	dir := makeClusterDir(t, p, "c")
	hold(t, dir, supervisorLock)
	plan := testPlan("c")
	plan.Components = []component{{Name: "etcd"}, {Name: "kube-scheduler", Health: srv.URL}}
	write(t, filepath.Join(dir, clusterFile), plan)
	s := &supervisor{dir: dir, state: plan, http: srv.Client(), status: supervisorStatus{
		Phase: supervisorRunning,
		Components: map[string]componentStatus{
			"etcd":           {Running: true, Healthy: true},
			"kube-scheduler": {Running: true, Healthy: true},
		},
	}}
	check := func(wantFailures int, want provider.Phase) {
		t.Helper()
		s.checkHealth(context.Background())
		c, err := p.Get(context.Background(), "c")
		if err != nil {
			t.Fatal(err)
		}
		if c.Phase != want || c.Components[1].Failures != wantFailures {
			t.Fatalf("after a check: %s (%q), kube-scheduler failures %d; want %s, %d", c.Phase, c.Message, c.Components[1].Failures, want, wantFailures)
		}
	}
	healthy.Store(true)
	check(0, provider.PhaseRunning)
	healthy.Store(false)
	check(1, provider.PhaseRunning)
	check(2, provider.PhaseRunning)
	healthy.Store(true)
	check(0, provider.PhaseRunning)
	healthy.Store(false)
	for i := 1; i < brokenAfterFailures; i++ {
		check(i, provider.PhaseRunning)
	}
	check(brokenAfterFailures, provider.PhaseBroken)
	healthy.Store(true)
	check(0, provider.PhaseRunning)
	// A component that is not running fails its checks without a probe.
	s.update(func(st *supervisorStatus) {
		cs := st.Components["kube-scheduler"]
		cs.Running = false
		st.Components["kube-scheduler"] = cs
	})
	check(1, provider.PhaseRunning)
}
