package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// TestReserveConcurrently: reservations of different names never disturb
// each other (a fresh, not yet locked reservation is not stale), and of one
// name exactly one wins.
func TestReserveConcurrently(t *testing.T) {
	p := New(Options{StateDir: t.TempDir()})
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	locks := make([]*flock.Lock, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			locks[i], errs[i] = p.reserve(fmt.Sprintf("c%d", i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("reserve c%d: %v", i, err)
			continue
		}
		if !flock.Held(filepath.Join(p.clusterDir(fmt.Sprintf("c%d", i)), createLock)) {
			t.Errorf("c%d reserved without its create lock held", i)
		}
		locks[i].Unlock()
	}

	won := 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			locks[i], errs[i] = p.reserve("same")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, provider.ErrAlreadyExists):
			t.Errorf("losing reserve: %v, want ErrAlreadyExists", err)
		}
	}
	if won != 1 {
		t.Errorf("%d reservations of one name won, want 1", won)
	}
	entries, _ := os.ReadDir(p.clustersDir())
	for _, e := range entries {
		if e.Name()[0] == '.' {
			t.Errorf("reservation dir left behind: %s", e.Name())
		}
	}
}

// TestStaleReservationsAreRemoved: an unlocked reservation older than
// staleReservation is a dead creator's leftover and goes; a fresh one stays.
func TestStaleReservationsAreRemoved(t *testing.T) {
	p := New(Options{StateDir: t.TempDir()})
	if err := os.MkdirAll(p.clustersDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(p.clustersDir(), ".old"+reservationSuffix+"1")
	fresh := filepath.Join(p.clustersDir(), ".fresh"+reservationSuffix+"2")
	for _, d := range []string{old, fresh} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * staleReservation)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	p.removeStaleReservations()
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale reservation kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh reservation removed: %v", err)
	}
}
