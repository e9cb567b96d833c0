package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

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
			locks[i], errs[i] = p.reserve(fmt.Sprintf("c%d", i), nil)
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
			locks[i], errs[i] = p.reserve("same", map[string]string{"k": "v"})
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

// TestStaleReservationsAreRemoved: a reservation whose creator is dead is a
// leftover and goes (List sweeps them); a live creator's stays.
func TestStaleReservationsAreRemoved(t *testing.T) {
	p := New(Options{StateDir: t.TempDir()})
	if err := os.MkdirAll(p.clustersDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	dead := exitedPID(t)
	stale := filepath.Join(p.clustersDir(), ".old"+reservationSuffix+strconv.Itoa(dead)+"-1")
	live := filepath.Join(p.clustersDir(), ".fresh"+reservationSuffix+strconv.Itoa(os.Getpid())+"-2")
	// Dirs a delete moved away: one whose deleter died, one being removed.
	staleTrash := filepath.Join(p.clustersDir(), ".gone"+trashSuffix+strconv.Itoa(dead)+"-3")
	liveTrash := filepath.Join(p.clustersDir(), ".going"+trashSuffix+strconv.Itoa(os.Getpid())+"-4")
	for _, d := range []string{stale, live, staleTrash, liveTrash} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A lock file nobody holds does not keep a dead deleter's dir.
	if err := os.WriteFile(filepath.Join(staleTrash, createLock), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reservation of a dead creator kept: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("reservation of a live creator removed: %v", err)
	}
	if _, err := os.Stat(staleTrash); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir of a dead deleter kept: %v", err)
	}
	if _, err := os.Stat(liveTrash); err != nil {
		t.Errorf("dir of a live deleter removed: %v", err)
	}
}

// exitedPID returns the pid of a process that has exited and been reaped.
func exitedPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}
