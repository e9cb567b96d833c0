package registry

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ephemera-dev/ephemera/internal/registry/cache"
)

// upstream is the go-containerregistry registry on loopback, counting the
// requests it answers.
type upstream struct {
	*httptest.Server
	n atomic.Int64
}

func (u *upstream) host() string { return strings.TrimPrefix(u.URL, "http://") }

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.n.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// pushRandom writes a random image to a registry at host as repo:tag.
func pushRandom(t *testing.T, host, repo, tag string, opts ...remote.Option) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// recorder is a handler that records what reached it.
type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
	w.WriteHeader(http.StatusTeapot)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

type ctxKey struct{}

func TestRouter(t *testing.T) {
	up := newUpstream(t)
	img := pushRandom(t, up.host(), "team/x", "v1")
	c, err := cache.New(cache.Config{Dir: t.TempDir(), Insecure: []string{up.host()}})
	if err != nil {
		t.Fatal(err)
	}
	local := &recorder{}
	var pushes recorder
	var plain atomic.Int64
	rt := &Router{
		Token:   "t0ken",
		Mirrors: []string{up.host(), "docker.io"},
		Cache:   c,
		Local:   local,
		Push: func(w http.ResponseWriter, r *http.Request, ns string) {
			pushes.ServeHTTP(w, r)
			pushes.mu.Lock()
			pushes.reqs[len(pushes.reqs)-1] += " ns=" + ns
			pushes.mu.Unlock()
		},
		AllowPlainHTTP: func(ctx context.Context) context.Context {
			plain.Add(1)
			return context.WithValue(ctx, ctxKey{}, true)
		},
		Status: func() Status { return Status{Addr: "127.0.0.1:1", Stats: cacheStats(c.Stats(), 7)} },
	}
	srv := httptest.NewServer(rt)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := net.SplitHostPort(host)
	p, _ := strconv.Atoi(port)
	rt.LocalPort = uint16(p)

	// A pull through the router with ns: the cache fetches it upstream
	// once, then serves it without the upstream.
	ref, _ := name.ParseReference(host+"/team/x:v1", name.Insecure)
	nsOpt := remote.WithTransport(&nsTransport{inner: http.DefaultTransport, ns: up.host()})
	for i := range 2 {
		got, err := remote.Image(ref, nsOpt)
		if err != nil {
			t.Fatalf("pull %d through the cache: %v", i, err)
		}
		if g, w := digestOf(t, got), digestOf(t, img); g != w {
			t.Fatalf("pulled %s, pushed %s", g, w)
		}
		if _, err := got.RawConfigFile(); err != nil {
			t.Fatal(err)
		}
		layers, _ := got.Layers()
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, rc)
			rc.Close()
		}
	}
	if st := c.Stats(); st.Misses == 0 || st.Hits == 0 {
		t.Errorf("cache stats %+v: want misses on the first pull and hits on the second", st)
	}
	if n := len(local.got()); n != 0 {
		t.Errorf("the local registry saw %d requests of pulls with ns", n)
	}
	if plain.Load() != 0 {
		t.Errorf("AllowPlainHTTP was called for requests without /insecure")
	}

	// do sends the daemon's token, or the one given.
	do := func(method, path string, token ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Header.Set(TokenHeader, append(token, "t0ken")[0])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// Without ns, or with a localhost ns: the local registry.
	for _, path := range []string{"/v2/", "/v2/app/manifests/v1", "/v2/app/manifests/v1?ns=localhost:" + port, "/v2/app/blobs/uploads/?ns=127.0.0.1:" + port, "/insecure/v2/app/manifests/v1?ns=localhost", "/v2/app/manifests/v1?ns=[::1]:" + port} {
		if resp := do(http.MethodGet, path); resp.StatusCode != http.StatusTeapot {
			t.Errorf("GET %s: %s, want the local registry's 418", path, resp.Status)
		}
	}
	// A registry the cache does not mirror is refused, not fetched; a
	// loopback one is the local registry under the name it had when the
	// daemon had another port.
	if resp := do(http.MethodGet, "/v2/team/x/manifests/v1?ns=quay.io"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET with ns=quay.io, not mirrored: %s, want 403", resp.Status)
	}
	if resp := do(http.MethodGet, "/v2/team/x/manifests/v1?ns=localhost:2379"); resp.StatusCode != http.StatusTeapot {
		t.Errorf("GET with ns=localhost:2379, not mirrored: %s, want the local registry's 418", resp.Status)
	}
	// Pushes with ns and prune need the token: clusters reach the daemon too.
	for _, token := range []string{"", "wrong"} {
		for _, mp := range [][2]string{{http.MethodPost, "/v2/team/x/blobs/uploads/?ns=docker.io"}, {http.MethodPut, "/v2/team/x/manifests/v2?ns=docker.io"}, {http.MethodPost, PrunePath}} {
			if resp := do(mp[0], mp[1], token); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s with token %q: %s, want 403", mp[0], mp[1], token, resp.Status)
			}
		}
	}
	if got := pushes.got(); len(got) != 0 {
		t.Errorf("pushes without the token reached the cache: %q", got)
	}
	// Pushes with ns: the cache import.
	do(http.MethodPost, "/v2/team/x/blobs/uploads/?ns=docker.io")
	do(http.MethodPut, "/v2/team/x/manifests/v2?ns=docker.io")
	want := []string{"POST /v2/team/x/blobs/uploads/ ns=docker.io", "PUT /v2/team/x/manifests/v2 ns=docker.io"}
	if got := pushes.got(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("pushes = %q, want %q", got, want)
	}
	// /insecure/v2 with ns: the cache, allowed plain HTTP.
	before := up.n.Load()
	if resp := do(http.MethodGet, "/insecure/v2/team/x/manifests/"+digestOf(t, img).String()+"?ns="+up.host()); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /insecure/v2/… with ns: %s", resp.Status)
	}
	if plain.Load() != 1 || up.n.Load() != before {
		t.Errorf("/insecure/v2: AllowPlainHTTP called %d times, upstream asked %d times; want once and never (the manifest is cached)", plain.Load(), up.n.Load()-before)
	}
	for _, path := range []string{"/", "/insecure/", "/v1/x", "/insecurev2/"} {
		if resp := do(http.MethodGet, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}

	// Status and prune.
	resp, err := http.Get(srv.URL + StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Addr != "127.0.0.1:1" || st.Stats.Blobs == 0 || st.Stats.MaxBytes != 7 {
		t.Errorf("status = %+v, %v", st, err)
	}
	if resp := do(http.MethodGet, PrunePath); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %s, want 405", PrunePath, resp.Status)
	}
	if resp := do(http.MethodPost, PrunePath+"?size=-1"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST %s?size=-1: %s, want 400", PrunePath, resp.Status)
	}
	// A handler may still hold the blob it just served (prune leaves
	// those): ask again until it has let go.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if resp := do(http.MethodPost, PrunePath); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %s", PrunePath, resp.Status)
		}
		s := c.Stats()
		if s.Blobs == 0 && s.Evictions > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after prune to 0: %+v, want an empty store", s)
		}
	}
}

func TestIsLocalHost(t *testing.T) {
	for h, want := range map[string]bool{
		"localhost": true, "localhost:5001": true, "LOCALHOST:5002": true, "127.0.0.1:5001": true, "127.0.0.2": true,
		"[::1]:5001": true, "::1": true, "docker.io": false, "10.0.0.1:5000": false, "localhost.example.com": false, "": false,
	} {
		if got := IsLocalHost(h); got != want {
			t.Errorf("IsLocalHost(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]target{
		"app:v1":                          {repo: "app", ref: ":v1"},
		"team/app":                        {repo: "team/app", ref: ":latest"},
		"localhost:5001/app:v1":           {repo: "app", ref: ":v1"},
		"127.0.0.1:5002/team/app:v1":      {repo: "team/app", ref: ":v1"},
		"127.0.0.1/app:v1":                {repo: "app", ref: ":v1"},
		"127.0.0.1:5000/app:v1":           {ns: "127.0.0.1:5000", repo: "app", ref: ":v1"},
		"localhost:5009/app:v1":           {repo: "app", ref: ":v1"},
		"docker.io/library/nginx:1":       {ns: "docker.io", repo: "library/nginx", ref: ":1"},
		"docker.io/nginx":                 {ns: "docker.io", repo: "library/nginx", ref: ":latest"},
		"10.1.2.3:5000/app:v1":            {ns: "10.1.2.3:5000", repo: "app", ref: ":v1"},
		"ghcr.io/o/app@sha256:" + hex64(): {ns: "ghcr.io", repo: "o/app", ref: "@sha256:" + hex64()},
	} {
		got, err := parseTarget(in, 5002)
		if err != nil || got != want {
			t.Errorf("parseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"app:v1": "app:v1", "example.com/team/app:v1": "team/app:v1", "docker.io/library/app": "app:latest",
		"localhost:5009/app:v2": "app:v2", "10.1.2.3:5000/a/b:c": "a/b:c",
	} {
		if got, err := LocalName(in); err != nil || got != want {
			t.Errorf("LocalName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := LocalName("app@sha256:" + hex64()); err == nil {
		t.Errorf("LocalName of a digest: no error")
	}
	if _, err := parseTarget("App:V1", 0); err == nil {
		t.Errorf("parseTarget of an upper-case name: no error")
	}
}

func hex64() string { return strings.Repeat("ab", 32) }

// The clusters' side serves pulls only, and a status without settings;
// /insecure reaches only the registries a cluster or the settings named.
func TestRouterForClusters(t *testing.T) {
	c, err := cache.New(cache.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := AllowInsecure(dir, "127.0.0.1:9"); err != nil {
		t.Fatal(err)
	}
	local, pushes := &recorder{}, &recorder{}
	rt := &Router{
		Token: "t0ken", Mirrors: []string{"127.0.0.1:9", "127.0.0.1:7", "10.9.0.3:5000", "docker.io"}, Cache: c, Local: local,
		Push:            func(w http.ResponseWriter, r *http.Request, _ string) { pushes.ServeHTTP(w, r) },
		AllowPlainHTTP:  func(ctx context.Context) context.Context { return ctx },
		InsecureAllowed: insecureAllowed(dir, []string{"127.0.0.1:7"}),
		ForClusters:     true,
		Status: func() Status {
			return Status{Addr: "127.0.0.1:1", Dir: dir, Settings: Settings{UpstreamUsername: "ci", UpstreamPasswordFile: "/secret"}}
		},
	}
	srv := httptest.NewServer(rt)
	defer srv.Close()
	do := func(method, path string) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Header.Set(TokenHeader, "t0ken") // even with the token
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, mp := range [][2]string{
		{http.MethodPost, "/v2/app/blobs/uploads/"},
		{http.MethodPut, "/v2/app/manifests/v1"},
		{http.MethodPost, "/v2/app/blobs/uploads/?ns=docker.io"},
		{http.MethodPost, PrunePath},
	} {
		if code := do(mp[0], mp[1]); code != http.StatusForbidden {
			t.Errorf("%s %s on the clusters' side: %d, want 403", mp[0], mp[1], code)
		}
	}
	if len(local.got()) != 0 || len(pushes.got()) != 0 {
		t.Errorf("writes reached the registry from the clusters' side: local %q, cache %q", local.got(), pushes.got())
	}
	if code := do(http.MethodGet, "/v2/app/manifests/v1"); code != http.StatusTeapot {
		t.Errorf("a pull of the local registry on the clusters' side: %d, want the local registry's 418", code)
	}
	resp, err := http.Get(srv.URL + StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Addr == "" || st.Settings.UpstreamUsername != "" || st.Settings.UpstreamPasswordFile != "" || st.Dir != "" {
		t.Errorf("status on the clusters' side = %+v, %v: want the address without settings or dir", st, err)
	}
	// /insecure: refused for a host nobody named, before any upstream is
	// asked; the allowed ones are loopback ports where nothing listens
	// (the cache answers 502).
	if code := do(http.MethodGet, "/insecure/v2/app/manifests/v1?ns=10.9.0.3:5000"); code != http.StatusForbidden {
		t.Errorf("/insecure for a host no cluster named: %d, want 403", code)
	}
	for _, ns := range []string{"127.0.0.1:9", "127.0.0.1:7"} {
		if code := do(http.MethodGet, "/insecure/v2/app/manifests/v1?ns="+ns); code == http.StatusForbidden {
			t.Errorf("/insecure for %s, named by a cluster or the settings: 403", ns)
		}
	}
}
