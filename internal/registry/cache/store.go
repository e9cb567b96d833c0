package cache

import (
	"container/heap"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// ErrDigestMismatch is returned when content fetched for a digest hashes to
// another one; such content is never stored.
var ErrDigestMismatch = errors.New("content does not match its digest")

// tmpPrefix starts the names of files being written; New removes them, since
// only a crash leaves them behind.
const tmpPrefix = ".tmp-"

var hexDigest = regexp.MustCompile(`^[a-f0-9]{64}$`)

// store is a content-addressed directory of blobs (manifests included):
// <dir>/blobs/sha256/<hex>. A file appears under its name only by a rename
// after its content was hashed and matched, so every named file is whole.
// It keeps each blob's size and last access in memory for LRU eviction.
type store struct {
	dir string // <Dir>/blobs/sha256
	now func() time.Time

	mu    sync.Mutex
	blobs map[string]*entry // by hex
	total int64
}

type entry struct {
	size   int64
	access time.Time
	pins   int // readers and writers holding the blob; not evicted meanwhile
}

// openStore creates the directory if needed, removes temp files a crash left
// behind and indexes the blobs, seeding their last access from mtime.
func openStore(root string, now func() time.Time) (*store, error) {
	s := &store{dir: filepath.Join(root, "blobs", "sha256"), now: now, blobs: map[string]*entry{}}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("remove partial download: %w", err)
			}
			continue
		}
		if !hexDigest.MatchString(name) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		s.blobs[name] = &entry{size: fi.Size(), access: fi.ModTime()}
		s.total += fi.Size()
	}
	return s, nil
}

func (s *store) path(hex string) string { return filepath.Join(s.dir, hex) }

// open opens a stored blob and marks it used; release must be called when
// done. It returns fs.ErrNotExist for a blob the store lacks.
func (s *store) open(hex string) (f *os.File, release func(), err error) {
	s.mu.Lock()
	e, ok := s.blobs[hex]
	if !ok {
		s.mu.Unlock()
		return nil, nil, fs.ErrNotExist
	}
	e.pins++
	now := s.now()
	touch := now.Sub(e.access) > time.Minute
	e.access = now
	s.mu.Unlock()
	release = func() {
		s.mu.Lock()
		e.pins--
		s.mu.Unlock()
	}
	f, err = os.Open(s.path(hex))
	if err != nil {
		release()
		if errors.Is(err, fs.ErrNotExist) {
			s.forget(hex)
		}
		return nil, nil, err
	}
	if touch {
		// The mtime carries the last access across restarts; best effort.
		_ = os.Chtimes(s.path(hex), time.Time{}, now)
	}
	return f, release, nil
}

func (s *store) has(hex string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blobs[hex]
	return ok
}

func (s *store) forget(hex string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.blobs[hex]; ok {
		s.total -= e.size
		delete(s.blobs, hex)
	}
}

// putObserver follows a put: the temp file it writes and how far.
type putObserver interface {
	created(path string)
	wrote(n int)
}

// put copies r into the store. With want set (a hex digest) the content must
// hash to it; with want empty it is stored under the digest it hashes to.
// Nothing appears in the store unless the whole content arrived and matched.
// obs, when not nil, is told of the temp file and of each write to it. It
// returns the hex digest and the size.
func (s *store) put(r io.Reader, want string, obs putObserver) (string, int64, error) {
	tmp, err := os.CreateTemp(s.dir, tmpPrefix+"*")
	if err != nil {
		return "", 0, err
	}
	var w io.Writer = tmp
	if obs != nil {
		obs.created(tmp.Name())
		w = observedWriter{tmp, obs}
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), r)
	if err != nil {
		return "", 0, err
	}
	got := sum(h)
	if want != "" && got != want {
		return "", 0, fmt.Errorf("sha256:%s: got sha256:%s: %w", want, got, ErrDigestMismatch)
	}
	err = s.commit(tmp, got, n)
	tmp = nil
	return got, n, err
}

// commit moves a temp file of the store's directory, whose content hashed to
// hex and is n bytes long, into the store under its digest. It closes tmp and
// removes it on failure.
func (s *store) commit(tmp *os.File, hex string, n int64) error {
	err := tmp.Sync()
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), s.path(hex))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	s.mu.Lock()
	if e, ok := s.blobs[hex]; ok {
		s.total -= e.size
		e.size = n
		e.access = s.now()
	} else {
		s.blobs[hex] = &entry{size: n, access: s.now()}
	}
	s.total += n
	s.mu.Unlock()
	return nil
}

type observedWriter struct {
	f   *os.File
	obs putObserver
}

func (o observedWriter) Write(p []byte) (int, error) {
	n, err := o.f.Write(p)
	o.obs.wrote(n)
	return n, err
}

func sum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// size is the bytes held by the store.
func (s *store) size() (bytes int64, blobs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, len(s.blobs)
}

// evict removes least recently used blobs until the store holds at most
// limit bytes, skipping blobs in use and keep. It returns the blobs and
// bytes removed.
func (s *store) evict(limit int64, keep string) (int, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total <= limit {
		return 0, 0, nil
	}
	h := make(lru, 0, len(s.blobs))
	for hex, e := range s.blobs {
		if e.pins == 0 && hex != keep {
			h = append(h, lruItem{hex, e.access})
		}
	}
	heap.Init(&h)
	var n int
	var freed int64
	var errs []error
	for s.total > limit && h.Len() > 0 {
		it := heap.Pop(&h).(lruItem)
		e := s.blobs[it.hex]
		if err := os.Remove(s.path(it.hex)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		s.total -= e.size
		delete(s.blobs, it.hex)
		n++
		freed += e.size
	}
	return n, freed, errors.Join(errs...)
}

type lruItem struct {
	hex    string
	access time.Time
}

// lru is a min-heap of blobs by last access.
type lru []lruItem

func (h lru) Len() int           { return len(h) }
func (h lru) Less(i, j int) bool { return h[i].access.Before(h[j].access) }
func (h lru) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *lru) Push(x any)        { *h = append(*h, x.(lruItem)) }
func (h *lru) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
