package cache

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Local is a registry of the user's own images: the distribution API, read
// and write, served from a store on disk. Digests are verified, tags never
// expire and nothing is evicted.
type Local struct {
	space space
}

var _ http.Handler = (*Local)(nil)

// NewLocal opens the registry under dir (blobs/sha256/<hex> and tags/,
// created if needed), removing what interrupted uploads left there.
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("local registry: no directory")
	}
	st, err := openStore(dir, time.Now)
	if err != nil {
		return nil, fmt.Errorf("local registry: open store: %w", err)
	}
	tg, err := openTags(dir)
	if err != nil {
		return nil, fmt.Errorf("local registry: open tags: %w", err)
	}
	return &Local{space: space{store: st, tags: tg, uploads: newUploads(), now: time.Now}}, nil
}

// ServeHTTP serves the distribution API: GET and HEAD of /v2/, of manifests
// by tag or digest, of blobs and of /v2/<name>/tags/list; blob uploads
// (POST /v2/<name>/blobs/uploads/ whole with ?digest=, as a mount with
// ?mount=, or as a session continued by PATCH and completed by PUT ?digest=)
// and PUT of manifests by tag or digest. The ns query parameter is ignored.
func (l *Local) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.space.serve(w, r)
}

// Images lists the tagged images as REPO:TAG, sorted (leaving out what the
// tags directory could not be read for).
func (l *Local) Images() []string {
	refs, _ := l.space.tags.all("")
	return refs
}

// Bytes is the size of the stored content.
func (l *Local) Bytes() int64 {
	b, _ := l.space.store.size()
	return b
}
