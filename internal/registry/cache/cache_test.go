package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// upstreamServer is the go-containerregistry registry on loopback, counting
// the requests it answers.
type upstreamServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []string // "METHOD /path"
}

func (u *upstreamServer) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(u.URL, "http://"), "https://")
}

// count is how many requests matched method and a path containing sub.
func (u *upstreamServer) count(method, sub string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.reqs {
		m, p, _ := strings.Cut(r, " ")
		if m == method && strings.Contains(p, sub) {
			n++
		}
	}
	return n
}

func (u *upstreamServer) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// newUpstream starts a registry; wrap (optional) sits between the counter and
// the registry.
func newUpstream(t *testing.T, tls bool, wrap func(http.Handler) http.Handler) *upstreamServer {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	u := &upstreamServer{}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Method+" "+r.URL.Path)
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	})
	u.Server = httptest.NewUnstartedServer(counted)
	u.Config.ErrorLog = log.New(io.Discard, "", 0) // refused TLS handshakes are expected
	if tls {
		u.StartTLS()
	} else {
		u.Start()
	}
	t.Cleanup(u.Close)
	return u
}

// push writes a random image to the upstream as repo:tag.
func push(t *testing.T, u *upstreamServer, repo, tag string, layerSize, layers int64, opts ...remote.Option) v1.Image {
	t.Helper()
	img, err := random.Image(layerSize, layers)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(u.host() + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, remote.WithTransport(u.Client().Transport))
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newCache starts a cache whose default upstream is the given one (plain
// HTTP, so listed insecure) and serves it on loopback.
func newCache(t *testing.T, u *upstreamServer, mod func(*Config)) (*Cache, *httptest.Server, *Config) {
	t.Helper()
	cfg := Config{
		Dir:       t.TempDir(),
		Default:   "origin.test",
		Upstreams: map[string]Upstream{"origin.test": {URL: u.URL}},
		Insecure:  []string{u.host()},
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv, &cfg
}

// pull pulls ref (REPO:TAG or REPO@DIGEST) through the cache at srv as a
// client would, checking every digest, and returns the image.
func pull(t *testing.T, srv *httptest.Server, ref string) (v1.Image, error) {
	t.Helper()
	r, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithTransport(srv.Client().Transport),
		// Fail at once: no retries of a 502 with backoff.
		remote.WithRetryPredicate(func(error) bool { return false }), remote.WithRetryStatusCodes())
	if err != nil {
		return nil, err
	}
	// Check the config and every layer by their digests, with GETs only,
	// as containerd pulls.
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(cfg); "sha256:"+hex.EncodeToString(sum[:]) != cfgName.String() {
		return nil, fmt.Errorf("config %s does not match its digest", cfgName)
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		want, err := l.Digest()
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.String() {
			return nil, fmt.Errorf("layer %s: got %s", want, got)
		}
	}
	return img, nil
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func blobDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	ds := []v1.Hash{cfg}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return ds
}

func TestPullMissThenHit(t *testing.T) {
	up := newUpstream(t, false, nil)
	img := push(t, up, "team/x", "v1", 4096, 3)
	c, srv, _ := newCache(t, up, nil)

	got, err := pull(t, srv, "team/x:v1")
	if err != nil {
		t.Fatalf("first pull: %v", err)
	}
	if g, w := mustDigest(t, got), mustDigest(t, img); g != w {
		t.Fatalf("pulled %s, pushed %s", g, w)
	}
	for _, d := range blobDigests(t, img) {
		if n := up.count(http.MethodGet, "/blobs/"+d.String()); n != 1 {
			t.Errorf("blob %s fetched upstream %d times on the first pull, want 1", d, n)
		}
	}
	st := c.Stats()
	if st.Misses != 5 { // manifest, config, 3 layers
		t.Errorf("misses after the first pull = %d, want 5", st.Misses)
	}
	if st.UpstreamBytes < 3*4096 {
		t.Errorf("upstream bytes = %d, want at least the layers' %d", st.UpstreamBytes, 3*4096)
	}

	before := up.total()
	if _, err := pull(t, srv, "team/x:v1"); err != nil {
		t.Fatalf("second pull: %v", err)
	}
	if n := up.total() - before; n != 0 {
		t.Errorf("second pull within the tag TTL sent %d requests upstream, want 0", n)
	}
	st2 := c.Stats()
	if st2.Misses != st.Misses || st2.Hits < st.Hits+5 {
		t.Errorf("stats after the second pull = %+v, want the same misses and 5 more hits than %+v", st2, st)
	}
}

func TestByDigestWithUpstreamStopped(t *testing.T) {
	up := newUpstream(t, false, nil)
	img := push(t, up, "app", "v1", 1024, 2)
	_, srv, _ := newCache(t, up, nil)
	if _, err := pull(t, srv, "app:v1"); err != nil {
		t.Fatal(err)
	}
	up.Close()
	if _, err := pull(t, srv, "app@"+mustDigest(t, img).String()); err != nil {
		t.Fatalf("pull by digest with the upstream stopped: %v", err)
	}
}

func TestTagServedStaleWhenUpstreamDown(t *testing.T) {
	up := newUpstream(t, false, nil)
	img := push(t, up, "app", "v1", 1024, 1)
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	c, srv, cfg := newCache(t, up, func(cfg *Config) { cfg.Now = clock.Now; cfg.TagTTL = 30 * time.Second })
	if _, err := pull(t, srv, "app:v1"); err != nil {
		t.Fatal(err)
	}

	// Past the TTL the tag is asked again: a HEAD, no content.
	clock.Add(31 * time.Second)
	heads := up.count(http.MethodHead, "/manifests/v1")
	if _, err := pull(t, srv, "app:v1"); err != nil {
		t.Fatal(err)
	}
	if n := up.count(http.MethodHead, "/manifests/v1") - heads; n != 1 {
		t.Errorf("tag asked upstream %d times past its TTL, want 1", n)
	}
	if c.Stats().Stale != 0 {
		t.Errorf("stale = %d with the upstream up, want 0", c.Stats().Stale)
	}

	up.Close()
	clock.Add(31 * time.Second)
	got, err := pull(t, srv, "app:v1")
	if err != nil {
		t.Fatalf("pull by tag with the upstream stopped: %v", err)
	}
	if g, w := mustDigest(t, got), mustDigest(t, img); g != w {
		t.Fatalf("pulled %s, want %s", g, w)
	}
	if c.Stats().Stale == 0 {
		t.Error("stale = 0 after serving a tag the upstream could not confirm")
	}

	// A restarted cache knows the tag from disk.
	c2, err := New(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(c2)
	defer srv2.Close()
	if _, err := pull(t, srv2, "app:v1"); err != nil {
		t.Fatalf("pull by tag from a restarted cache with the upstream stopped: %v", err)
	}
}

func TestTagGoneUpstreamIsNotServed(t *testing.T) {
	up := newUpstream(t, false, nil)
	push(t, up, "app", "v1", 1024, 1)
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	_, srv, _ := newCache(t, up, func(cfg *Config) { cfg.Now = clock.Now })
	if _, err := pull(t, srv, "app:v1"); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodDelete, up.URL+"/v2/app/manifests/v1", nil)
	resp, err := up.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	clock.Add(time.Hour)
	if _, err := pull(t, srv, "app:v1"); err == nil {
		t.Fatal("a tag the upstream no longer has was served")
	}
}

func TestConcurrentPullsFetchOnce(t *testing.T) {
	const clients = 4
	var layer atomic.Value // the big layer's digest, once pushed
	var waiting atomic.Int32
	release := make(chan struct{})
	up := newUpstream(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d, _ := layer.Load().(string); d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, d) {
				// Hold the download until every client asked the cache.
				select {
				case <-release:
				case <-time.After(20 * time.Second):
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	img := push(t, up, "big", "v1", 20<<20, 1)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	layer.Store(ld.String())

	c, err := New(Config{Dir: t.TempDir(), Default: "o", Upstreams: map[string]Upstream{"o": {URL: up.URL}}, Insecure: []string{up.host()}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ld.String()) && r.Method == http.MethodGet {
			if waiting.Add(1) == clients {
				close(release)
			}
		}
		c.ServeHTTP(w, r)
	}))
	defer srv.Close()

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			if _, err := pull(t, srv, "big:v1"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("pull: %v", err)
	}
	if n := up.count(http.MethodGet, "/blobs/"+ld.String()); n != 1 {
		t.Errorf("the 20 MB layer was fetched upstream %d times for %d concurrent pulls, want 1", n, clients)
	}
	if st := c.Stats(); st.UpstreamBytes > 21<<20 {
		t.Errorf("upstream bytes = %d for one 20 MB layer", st.UpstreamBytes)
	}
}

func TestCorruptUpstreamBlobIsRefused(t *testing.T) {
	var corrupt atomic.Bool
	corrupt.Store(true)
	up := newUpstream(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !corrupt.Load() || !strings.Contains(r.URL.Path, "/blobs/") {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			if len(b) > 0 {
				b[len(b)/2] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(b)
		})
	})
	img := push(t, up, "app", "v1", 4096, 1)
	c, srv, cfg := newCache(t, up, nil)

	if _, err := pull(t, srv, "app:v1"); err == nil {
		t.Fatal("pull of a corrupt blob succeeded")
	}
	for _, d := range blobDigests(t, img) {
		if _, err := os.Stat(filepath.Join(cfg.Dir, "blobs", "sha256", d.Hex)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("corrupt blob %s stored (stat: %v)", d, err)
		}
	}
	assertNoTemp(t, cfg.Dir)
	if st := c.Stats(); st.Blobs != 1 { // the manifest only
		t.Errorf("store holds %d blobs after refusing corrupt ones, want the manifest only", st.Blobs)
	}

	corrupt.Store(false)
	if _, err := pull(t, srv, "app:v1"); err != nil {
		t.Fatalf("pull once the upstream is sound: %v", err)
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tmpPrefix) {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}

func TestNewRemovesPartialDownloads(t *testing.T) {
	dir := t.TempDir()
	blobs := filepath.Join(dir, "blobs", "sha256")
	tagDir := filepath.Join(dir, "tags", "origin.test", "x")
	for _, d := range []string{blobs, tagDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	whole := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // sha256 of nothing
	for p, content := range map[string]string{
		filepath.Join(blobs, tmpPrefix+"123"):  "half a layer",
		filepath.Join(tagDir, tmpPrefix+"456"): "sha256:",
		filepath.Join(blobs, whole):            "",
	} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	assertNoTemp(t, dir)
	if st := c.Stats(); st.Blobs != 1 {
		t.Errorf("store indexes %d blobs, want the whole one", st.Blobs)
	}
}

func TestLRUEvictionUnderCap(t *testing.T) {
	up := newUpstream(t, false, nil)
	a := push(t, up, "app-a", "v1", 64<<10, 1)
	b := push(t, up, "app-b", "v1", 64<<10, 1)
	d := push(t, up, "app-d", "v1", 64<<10, 1)
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	// Room for two images and a bit, not three.
	c, srv, cfg := newCache(t, up, func(cfg *Config) { cfg.Now = clock.Now; cfg.MaxBytes = 2*(64<<10) + 16<<10 })
	step := func(ref string) {
		t.Helper()
		clock.Add(time.Minute)
		if _, err := pull(t, srv, ref); err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
	}
	step("app-a:v1")
	step("app-b:v1")
	step("app-a:v1") // a is now more recent than b
	step("app-d:v1")

	stored := func(img v1.Image) bool {
		ls, _ := img.Layers()
		h, _ := ls[0].Digest()
		_, err := os.Stat(filepath.Join(cfg.Dir, "blobs", "sha256", h.Hex))
		return err == nil
	}
	if !stored(a) || !stored(d) {
		t.Errorf("recently used layers evicted: a stored %v, d stored %v", stored(a), stored(d))
	}
	if stored(b) {
		t.Error("least recently used layer b kept beyond the cap")
	}
	st := c.Stats()
	if st.Bytes > cfg.MaxBytes || st.Evictions == 0 {
		t.Errorf("stats %+v: want bytes under %d and evictions", st, cfg.MaxBytes)
	}
	if err := c.Prune(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Bytes != 0 || st.Blobs != 0 {
		t.Errorf("after Prune(0): %+v", st)
	}
}

func TestRejectsWritesAndBadPaths(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/v2/", http.StatusOK},
		{http.MethodPost, "/v2/app/blobs/uploads/", http.StatusMethodNotAllowed},
		{http.MethodGet, "/v2/X/manifests/v1", http.StatusBadRequest},
		{http.MethodGet, "/v2/app/blobs/sha512:00", http.StatusBadRequest},
		{http.MethodGet, "/v2/app/tags/list", http.StatusNotFound},
		{http.MethodGet, "/other", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}
