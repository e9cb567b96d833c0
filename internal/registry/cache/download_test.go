package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBlobStreamedWhileDownloading: a client gets a blob's bytes as the
// upstream sends them, all but the last, which comes once the digest
// matched; a corrupt blob ends short instead.
func TestBlobStreamedWhileDownloading(t *testing.T) {
	for _, corrupt := range []bool{false, true} {
		t.Run(map[bool]string{false: "sound", true: "corrupt"}[corrupt], func(t *testing.T) {
			var layer atomic.Value
			release := make(chan struct{})
			up := newUpstream(t, false, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					d, _ := layer.Load().(string)
					if d == "" || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, d) {
						h.ServeHTTP(w, r)
						return
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					b := rec.Body.Bytes()
					if corrupt {
						b[len(b)-1] ^= 0xff
					}
					w.Header().Set("Content-Length", rec.Header().Get("Content-Length"))
					w.WriteHeader(rec.Code)
					half := len(b) / 2
					_, _ = w.Write(b[:half])
					http.NewResponseController(w).Flush()
					<-release
					_, _ = w.Write(b[half:])
				})
			})
			img := push(t, up, "app", "v1", 1<<20, 1)
			ls, _ := img.Layers()
			ld, _ := ls[0].Digest()
			size, _ := ls[0].Size()
			layer.Store(ld.String())
			_, srv, _ := newCache(t, up, nil)

			resp, err := http.Get(srv.URL + "/v2/app/blobs/" + ld.String())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ContentLength != size {
				t.Fatalf("status %d length %d, want 200 and %d", resp.StatusCode, resp.ContentLength, size)
			}
			first := make([]byte, size/2)
			got := make(chan error, 1)
			go func() { _, err := io.ReadFull(resp.Body, first); got <- err }()
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("read the first half: %v", err)
				}
			case <-time.After(20 * time.Second):
				close(release)
				t.Fatal("the first half did not reach the client while the upstream held the rest")
			}
			close(release)
			rest, err := io.ReadAll(resp.Body)
			if corrupt {
				if err == nil || int64(len(first)+len(rest)) >= size {
					t.Fatalf("corrupt blob: read %d of %d bytes, err %v; want a short body", len(first)+len(rest), size, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("read the rest: %v", err)
			}
			sum := sha256.Sum256(append(first, rest...))
			if "sha256:"+hex.EncodeToString(sum[:]) != ld.String() {
				t.Fatal("streamed content does not match its digest")
			}
		})
	}
}

// TestStalledDownloadIsAbandoned: an upstream that stops sending mid-blob
// does not hold the digest: the client gets a short body, and the next
// request fetches anew.
func TestStalledDownloadIsAbandoned(t *testing.T) {
	var layer atomic.Value
	var stalled atomic.Bool
	stalled.Store(true)
	unblock := make(chan struct{})
	defer close(unblock)
	up := newUpstream(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d, _ := layer.Load().(string)
			if d == "" || !stalled.Load() || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, d) {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			w.Header().Set("Content-Length", rec.Header().Get("Content-Length"))
			_, _ = w.Write(rec.Body.Bytes()[:1000])
			http.NewResponseController(w).Flush()
			<-unblock
		})
	})
	img := push(t, up, "app", "v1", 64<<10, 1)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	layer.Store(ld.String())
	c, srv, _ := newCache(t, up, func(cfg *Config) { cfg.StallTimeout = 300 * time.Millisecond })

	get := func() (int, error) {
		resp, err := http.Get(srv.URL + "/v2/app/blobs/" + ld.String())
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return len(b), err
	}
	if n, err := get(); err == nil {
		t.Fatalf("stalled download: read %d bytes without error", n)
	}
	stalled.Store(false)
	if _, err := get(); err != nil {
		t.Fatalf("after the stalled download: %v", err)
	}
	if st := c.Stats(); st.Blobs != 1 {
		t.Errorf("store holds %d blobs, want the layer", st.Blobs)
	}
}
