package cache

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// uploadIdle is how long an upload session may see no request before the next
// new upload removes it.
const uploadIdle = time.Hour

// uploads are the blob upload sessions in progress. Each writes a temp file in
// the store's directory (removed when the store is opened, as an interrupted
// download's) and hashes what it receives as it comes.
type uploads struct {
	mu sync.Mutex
	m  map[string]*upload // by id
}

func newUploads() *uploads { return &uploads{m: map[string]*upload{}} }

type upload struct {
	ns, repo string

	mu     sync.Mutex // held by the request using the session
	f      *os.File
	h      hash.Hash
	size   int64
	used   time.Time
	closed bool // completed or cancelled
}

// Write appends to the temp file, hashing exactly what was written, so the
// hash and the file agree even after a failed write.
func (u *upload) Write(p []byte) (int, error) {
	n, err := u.f.Write(p)
	u.h.Write(p[:n])
	u.size += int64(n)
	return n, err
}

// drop closes and removes the temp file (the upload is cancelled).
func (u *upload) drop() {
	if !u.closed {
		u.closed = true
		u.f.Close()
		os.Remove(u.f.Name())
	}
}

// start opens a session for repo under ns, first removing sessions idle
// since before now-uploadIdle.
func (us *uploads) start(st *store, ns, repo string, now time.Time) (string, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	f, err := os.CreateTemp(st.dir, tmpPrefix+"upload-*")
	if err != nil {
		return "", err
	}
	us.mu.Lock()
	defer us.mu.Unlock()
	for old, u := range us.m {
		if u.mu.TryLock() {
			if u.used.Before(now.Add(-uploadIdle)) {
				u.drop()
				delete(us.m, old)
			}
			u.mu.Unlock()
		}
	}
	us.m[id] = &upload{ns: ns, repo: repo, f: f, h: sha256.New(), used: now}
	return id, nil
}

// get returns a session of repo under ns, locked; nil when there is none.
func (us *uploads) get(id, ns, repo string) *upload {
	us.mu.Lock()
	u := us.m[id]
	us.mu.Unlock()
	if u == nil || u.ns != ns || u.repo != repo {
		return nil
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	return u
}

// end drops a session from the map (its file is committed or removed).
func (us *uploads) end(id string) {
	us.mu.Lock()
	delete(us.m, id)
	us.mu.Unlock()
}

var contentRange = regexp.MustCompile(`^(?:bytes[ =])?([0-9]+)-([0-9]+)$`)

// serveUpload serves /v2/<repo>/blobs/uploads/[<id>].
func (s *space) serveUpload(w http.ResponseWriter, r *http.Request, repo, id string) {
	if id == "" {
		if r.Method != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" of an upload")
			return
		}
		s.startUpload(w, r, repo)
		return
	}
	u := s.uploads.get(id, s.ns, repo)
	if u == nil {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", fmt.Sprintf("no upload %s in %s", id, repo))
		return
	}
	defer u.mu.Unlock()
	u.used = s.now()
	switch r.Method {
	case http.MethodGet:
		s.uploadStatus(w, r, repo, id, u, http.StatusNoContent)
	case http.MethodPatch:
		s.patchUpload(w, r, repo, id, u)
	case http.MethodPut:
		s.finishUpload(w, r, repo, id, u)
	case http.MethodDelete:
		u.drop()
		s.uploads.end(id)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" of an upload")
	}
}

// startUpload answers POST /v2/<repo>/blobs/uploads/: a mount of a stored blob
// (?mount=), a whole blob (?digest=, the body), or a new session.
func (s *space) startUpload(w http.ResponseWriter, r *http.Request, repo string) {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		// Blobs are global to the store: any stored blob mounts, whatever
		// from says. One not stored gets a session, as the spec says.
		if hex, ok := parseDigest(w, m); !ok {
			return
		} else if s.store.has(hex) {
			s.blobCreated(w, r, repo, hex)
			return
		}
	} else if d := q.Get("digest"); d != "" {
		hex, ok := parseDigest(w, d)
		if !ok {
			return
		}
		if _, _, err := s.store.put(r.Body, hex, nil); err != nil {
			writeStoreError(w, err)
			return
		}
		s.blobStored(hex)
		s.blobCreated(w, r, repo, hex)
		return
	}
	id, err := s.uploads.start(s.store, s.ns, repo, s.now())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	s.uploadStatus(w, r, repo, id, nil, http.StatusAccepted)
}

// uploadStatus writes a session's Location, Range and id (u nil: nothing
// received yet).
func (s *space) uploadStatus(w http.ResponseWriter, r *http.Request, repo, id string, u *upload, status int) {
	var size int64
	if u != nil {
		size = u.size
	}
	h := w.Header()
	h.Set("Location", location(r, "/v2/"+repo+"/blobs/uploads/"+id, nil))
	h.Set("Range", "0-"+strconv.FormatInt(max(size-1, 0), 10))
	h.Set("Docker-Upload-UUID", id)
	h.Set("Content-Length", "0")
	w.WriteHeader(status)
}

// patchUpload appends a chunk; a Content-Range must start where the upload is.
func (s *space) patchUpload(w http.ResponseWriter, r *http.Request, repo, id string, u *upload) {
	if cr := r.Header.Get("Content-Range"); cr != "" {
		m := contentRange.FindStringSubmatch(cr)
		if m == nil || m[1] != strconv.FormatInt(u.size, 10) {
			w.Header().Set("Location", location(r, "/v2/"+repo+"/blobs/uploads/"+id, nil))
			w.Header().Set("Range", "0-"+strconv.FormatInt(max(u.size-1, 0), 10))
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID",
				fmt.Sprintf("Content-Range %q: the upload has %d bytes", cr, u.size))
			return
		}
	}
	if _, err := io.Copy(u, r.Body); err != nil {
		// What arrived is kept: the client may ask the status and resume.
		writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
		return
	}
	s.uploadStatus(w, r, repo, id, u, http.StatusAccepted)
}

// finishUpload completes a session with its last chunk (the body, may be
// empty): stored when it hashes to ?digest=, cancelled when not.
func (s *space) finishUpload(w http.ResponseWriter, r *http.Request, repo, id string, u *upload) {
	hex, ok := parseDigest(w, r.URL.Query().Get("digest"))
	if !ok {
		return
	}
	if _, err := io.Copy(u, r.Body); err != nil {
		writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
		return
	}
	got := sum(u.h)
	if got != hex {
		u.drop()
		s.uploads.end(id)
		writeStoreError(w, fmt.Errorf("sha256:%s: got sha256:%s: %w", hex, got, ErrDigestMismatch))
		return
	}
	u.closed = true
	s.uploads.end(id)
	if err := s.store.commit(u.f, hex, u.size); err != nil {
		writeStoreError(w, err)
		return
	}
	s.blobStored(hex)
	s.blobCreated(w, r, repo, hex)
}

func (s *space) blobStored(hex string) {
	if s.stored != nil {
		s.stored(hex)
	}
}

// blobCreated answers a blob now stored.
func (s *space) blobCreated(w http.ResponseWriter, r *http.Request, repo, hex string) {
	h := w.Header()
	h.Set("Location", location(r, "/v2/"+repo+"/blobs/sha256:"+hex, nil))
	h.Set("Docker-Content-Digest", "sha256:"+hex)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// writeStoreError maps a failure to store pushed content.
func writeStoreError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrDigestMismatch) {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
}

// ServePush serves the distribution API, pushes included, on the cache's
// store for the upstream ns names (as the ns query parameter does for
// ServeHTTP; "" for Config.Default), without asking the upstream: content
// pushed is digest-verified and stored (under the cache's cap), a manifest
// pushed by tag records the tag as resolved now. A pull through the cache of
// that tag is then a hit, and is served stale while the upstream cannot be
// asked. Reads answer from the store only (a client checking which blobs
// it must push never makes the cache fetch them).
func (c *Cache) ServePush(w http.ResponseWriter, r *http.Request, ns string) {
	up, err := c.upstreamFor(ns, false)
	if err != nil {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		writeError(w, http.StatusBadRequest, "NAME_INVALID", err.Error())
		return
	}
	sp := space{store: c.store, tags: c.tags, uploads: c.uploads, ns: up.key, now: c.cfg.Now, stored: c.enforceCap}
	sp.serve(w, r)
}
