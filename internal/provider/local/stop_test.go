package local

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/internal/flock"
)

// TestStopWaitsForTheSupervisorLock: Stop returns only once nobody holds
// the supervisor's lock. A killed supervisor can hold it a moment after
// killAll finds it gone; a Restart right after Stop would otherwise see
// the cluster as running and start nothing.
func TestStopWaitsForTheSupervisorLock(t *testing.T) {
	p := newTestProvider(t)
	dir := makeClusterDir(t, p, "c")
	write(t, filepath.Join(dir, clusterFile), testPlan("c"))
	l, err := flock.TryLock(filepath.Join(dir, supervisorLock))
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan time.Time, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		released <- time.Now()
		l.Unlock()
	}()
	if err := p.Stop(t.Context(), "c"); err != nil {
		t.Fatal(err)
	}
	if flock.Held(filepath.Join(dir, supervisorLock)) {
		t.Fatal("Stop returned while the supervisor's lock is held")
	}
	<-released
}
