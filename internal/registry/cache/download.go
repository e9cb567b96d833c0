package cache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
)

// download is one fetch of a digest from upstream, shared by every request
// for that digest while it runs. Blob requests are streamed from its temp
// file as it grows, all but the last byte: that one is sent only once the
// whole content matched its digest, so a client never receives corrupt
// content in full (it sees a short body instead).
type download struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	path    string        // temp file, once created
	size    int64         // Content-Length; -1 until known, or when the upstream sent none
	written int64
	done    bool
	err     error
}

func newDownload() *download {
	return &download{changed: make(chan struct{}), size: -1}
}

// update changes the download under its lock and wakes its waiters.
func (d *download) update(f func()) {
	d.mu.Lock()
	f()
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// wait returns once ready (called under the lock) is true, or ctx ends.
func (d *download) wait(ctx context.Context, ready func() bool) error {
	for {
		d.mu.Lock()
		ok, ch := ready(), d.changed
		d.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (d *download) created(path string) { d.update(func() { d.path = path }) }
func (d *download) wrote(n int)         { d.update(func() { d.written += int64(n) }) }

// join returns the running download of hex, or starts one; leader is true
// for the caller that started it. The download goes on when its callers
// leave.
func (c *Cache) join(ctx context.Context, up *upstream, repo, kind, hex string) (d *download, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.downloads[hex]; ok {
		return d, false
	}
	d = newDownload()
	c.downloads[hex] = d
	ctx = context.WithoutCancel(ctx)
	go func() {
		err := c.download(ctx, up, repo, kind, hex, d)
		c.mu.Lock()
		delete(c.downloads, hex)
		c.mu.Unlock()
		d.update(func() { d.done, d.err = true, err })
	}()
	return d, true
}

// serveDigest serves content by digest: from the store, else fetched
// upstream once for concurrent requests, verified and stored. A blob GET is
// streamed as it arrives; other requests wait for the stored content.
func (c *Cache) serveDigest(w http.ResponseWriter, r *http.Request, up *upstream, repo, kind, hex string) {
	if c.serveStored(w, r, kind, hex, true) {
		return
	}
	d, leader := c.join(r.Context(), up, repo, kind, hex)
	if !leader {
		c.hits.Add(1)
	}
	ctx := r.Context()
	if kind == kindBlobs && r.Method == http.MethodGet && r.Header.Get("Range") == "" {
		if err := d.wait(ctx, func() bool { return d.done || (d.path != "" && d.size >= 0) }); err != nil {
			return
		}
		if c.stream(w, r, d, hex) {
			return
		}
	}
	if err := d.wait(ctx, func() bool { return d.done }); err != nil {
		return
	}
	if d.err != nil {
		writeUpstreamError(w, kind, d.err)
		return
	}
	if !c.serveStored(w, r, kind, hex, false) {
		// Evicted at once: a cap smaller than the content.
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "content evicted before it was served; the cache size is too small")
	}
}

// stream sends a blob from a running download's temp file; false when it
// cannot (the download ended or its file is gone) and nothing was written.
func (c *Cache) stream(w http.ResponseWriter, r *http.Request, d *download, hex string) bool {
	d.mu.Lock()
	path, size, done := d.path, d.size, d.done
	d.mu.Unlock()
	if done || size <= 0 {
		return false // an empty body would be whole before it is verified
	}
	f, err := os.Open(path)
	if err != nil {
		return false // renamed into the store or removed: done soon
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Docker-Content-Digest", "sha256:"+hex)
	h.Set("Etag", `"sha256:`+hex+`"`)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := make([]byte, 256<<10)
	var sent int64
	for sent < size {
		var limit int64
		var failed bool
		err := d.wait(r.Context(), func() bool {
			limit = min(d.written, size-1) // the last byte waits for the digest
			if d.done {
				failed = d.err != nil || d.written != size
				limit = d.written
			}
			return d.done || limit > sent
		})
		if err != nil || failed {
			return true // a short body: the client fails and retries
		}
		for sent < limit {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), limit-sent)], sent)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return true
				}
				sent += int64(n)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return true
			}
		}
		_ = rc.Flush()
	}
	return true
}
