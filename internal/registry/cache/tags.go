package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// tags remembers what each tag last resolved to: in memory with the time it
// was resolved, and on disk (<Dir>/tags/<upstream>/<repo>/_tags/<tag>, holding
// the digest) so a restarted cache still serves tags while the upstream is
// down. No repository path component starts with "_", so the tags of a
// repository never mix with a nested repository (app:v1 and app/v1:x).
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

// tagsDir holds a repository's tags under t.dir.
const tagsDir = "_tags"

// key names a tag; repo and tag were validated, upstream is a host (or empty
// for the local registry).
func tagKey(upstream, repo, tag string) string {
	return filepath.Join(upstream, repo, tagsDir, tag)
}

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

// list returns a repository's tags, sorted; none when it has none.
func (t *tags) list(upstream, repo string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(t.dir, upstream, repo, tagsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && tagName.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil // ReadDir sorts by name
}

// all returns every tag under upstream as REPO:TAG, sorted.
func (t *tags) all(upstream string) ([]string, error) {
	root := filepath.Join(t.dir, upstream)
	var refs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		dir, tag := filepath.Split(p)
		repoDir, ok := strings.CutSuffix(filepath.Dir(dir), string(filepath.Separator)+tagsDir)
		if !ok || !tagName.MatchString(tag) {
			return nil
		}
		repo, err := filepath.Rel(root, repoDir)
		if err != nil || !repoName.MatchString(filepath.ToSlash(repo)) {
			return nil
		}
		refs = append(refs, filepath.ToSlash(repo)+":"+tag)
		return nil
	})
	slices.Sort(refs)
	return refs, err
}
