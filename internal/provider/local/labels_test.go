package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/internal/provider"
)

func TestSetLabels(t *testing.T) {
	ctx := context.Background()
	p := newTestProvider(t)
	dir := makeClusterDir(t, p, "c")
	write(t, filepath.Join(dir, labelsFile), map[string]string{"owner": "a", "pool": "p"})

	labelsOf := func() map[string]string {
		t.Helper()
		c, err := p.Get(ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		return c.Labels
	}
	// Replaced, not merged.
	want := map[string]string{"owner": "a", "bound-to": "0c2f-uid"}
	if err := p.SetLabels(ctx, "c", want); err != nil {
		t.Fatalf("SetLabels: %v", err)
	}
	if diff := cmp.Diff(want, labelsOf()); diff != "" {
		t.Errorf("labels after SetLabels (-want +got):\n%s", diff)
	}
	if err := p.SetLabels(ctx, "c", nil); err != nil {
		t.Fatalf("SetLabels(nil): %v", err)
	}
	if got := labelsOf(); len(got) != 0 {
		t.Errorf("labels after SetLabels(nil) = %v, want none", got)
	}
	// No temporary file is left next to labels.json.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("cluster dir holds %v, want labels.json only", entries)
	}

	for _, name := range []string{"missing", "Bad_Name", "..", ""} {
		err := p.SetLabels(ctx, name, want)
		if !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("SetLabels(%q) = %v, want ErrNotFound", name, err)
		}
	}
	if _, err := os.Stat(p.clusterDir("missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SetLabels of a missing cluster made its dir: %v", err)
	}
}

// TestSetLabelsRacingDelete sets labels in a loop while the cluster is
// deleted: the delete always succeeds and removes everything, and
// SetLabels either succeeds (before the delete) or says ErrNotFound.
// Deleting with a plain RemoveAll fails here: a label write can add a file
// to the dir between its last read and its rmdir (ENOTEMPTY).
func TestSetLabelsRacingDelete(t *testing.T) {
	ctx := context.Background()
	p := newTestProvider(t)
	for i := range 40 {
		name := fmt.Sprintf("c%d", i)
		dir := makeClusterDir(t, p, name)
		write(t, filepath.Join(dir, clusterFile), testPlan(name))
		// Files enough that the removal takes a while.
		for j := range 50 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", j)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					err := p.SetLabels(ctx, name, map[string]string{"k": "v"})
					if errors.Is(err, provider.ErrNotFound) {
						return
					}
					if err != nil {
						t.Errorf("SetLabels racing Delete: %v", err)
						return
					}
				}
			}()
		}
		err := p.Delete(ctx, name)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("Delete racing SetLabels: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cluster dir left: %v", err)
		}
	}
	if entries, _ := os.ReadDir(p.clustersDir()); len(entries) != 0 {
		t.Errorf("clusters dir holds %v after the deletes", entries)
	}
}
