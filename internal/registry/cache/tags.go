package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// tags remembers what each tag last resolved to: in memory with the time it
// was resolved, and on disk (<Dir>/tags/<upstream>/<repo>/<tag>, holding the
// digest) so a restarted cache still serves tags while the upstream is down.
type tags struct {
	dir string

	mu sync.Mutex
	m  map[string]tagEntry
}

type tagEntry struct {
	hex      string
	resolved time.Time // zero when read from disk: never fresh
}

func openTags(root string) (*tags, error) {
	t := &tags{dir: filepath.Join(root, "tags"), m: map[string]tagEntry{}}
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		return nil, err
	}
	// Temp files a crash left behind.
	err := filepath.WalkDir(t.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), tmpPrefix) {
			return os.Remove(p)
		}
		return err
	})
	return t, err
}

// key names a tag; repo and tag were validated, upstream is a host.
func tagKey(upstream, repo, tag string) string { return filepath.Join(upstream, repo, tag) }

// get returns the last digest a tag resolved to and when (zero if it was
// known only from disk).
func (t *tags) get(key string) (tagEntry, bool) {
	t.mu.Lock()
	e, ok := t.m[key]
	t.mu.Unlock()
	if ok {
		return e, true
	}
	b, err := os.ReadFile(filepath.Join(t.dir, key))
	if err != nil {
		return tagEntry{}, false
	}
	hex := strings.TrimPrefix(strings.TrimSpace(string(b)), "sha256:")
	if !hexDigest.MatchString(hex) {
		return tagEntry{}, false
	}
	return tagEntry{hex: hex}, true
}

// set records a resolution, in memory and (when the digest changed) on disk.
func (t *tags) set(key, hex string, now time.Time) error {
	t.mu.Lock()
	old, ok := t.m[key]
	t.m[key] = tagEntry{hex: hex, resolved: now}
	t.mu.Unlock()
	if ok && old.hex == hex {
		return nil
	}
	p := filepath.Join(t.dir, key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), tmpPrefix+"*")
	if err != nil {
		return err
	}
	_, err = f.WriteString("sha256:" + hex + "\n")
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
