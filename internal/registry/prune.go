package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/registry/cache"
)

// Prune evicts the least recently used blobs of dir's cache until it holds
// at most limit bytes (0 empties it): through the running daemon, or
// directly in the store when none runs. The local registry is never
// pruned.
func Prune(ctx context.Context, dir string, limit int64) (CacheStats, error) {
	d, ok, err := Running(dir)
	if err != nil {
		return CacheStats{}, err
	}
	if ok {
		st, err := RequestPrune(ctx, d, limit)
		return st.Stats, err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return CacheStats{}, nil
	}
	// Keep a daemon from starting on the store meanwhile.
	lock, err := flock.TryLock(filepath.Join(dir, daemonLock))
	if errors.Is(err, flock.ErrLocked) {
		return CacheStats{}, fmt.Errorf("the registry daemon of %s is starting; prune again in a moment", dir)
	}
	if err != nil {
		return CacheStats{}, err
	}
	defer lock.Unlock()
	c, err := cache.New(cache.Config{Dir: filepath.Join(dir, cacheDir)})
	if err != nil {
		return CacheStats{}, err
	}
	if err := c.Prune(ctx, limit); err != nil {
		return CacheStats{}, err
	}
	return cacheStats(c.Stats(), 0), nil
}

// Purge removes a registry dir whose daemon is stopped. It refuses a dir
// holding entries a registry dir never has, so that a mistaken
// --registry-dir is never emptied, and a dir whose daemon runs.
func Purge(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// No daemon may start (Ensure holds start.lock) or run meanwhile.
	start, err := flock.TryLock(filepath.Join(dir, startLock))
	if err != nil {
		return fmt.Errorf("not removing %s: a registry daemon is being started: %w", dir, err)
	}
	defer start.Unlock()
	running, err := flock.TryLock(filepath.Join(dir, daemonLock))
	if err != nil {
		return fmt.Errorf("not removing %s: its registry daemon runs; stop it first", dir)
	}
	defer running.Unlock()
	known := map[string]bool{settingsFile: true, daemonFile: true, daemonLock: true, tokenFile: true, insecureDir: true, portFile: true, startLock: true, logFile: true, cacheDir: true, localDir: true}
	var unknown []string
	for _, en := range entries {
		n := en.Name()
		temp := strings.HasPrefix(n, "."+settingsFile+".") || strings.HasPrefix(n, "."+daemonFile+".")
		if !known[n] && !temp {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("not removing %s: it holds files a registry dir never has (%s); check --registry-dir, and remove it yourself if you mean to", dir, strings.Join(unknown, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("purge %s: %w", dir, err)
	}
	return nil
}
