package cache

import (
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

type staticKeychain struct {
	host string
	auth authn.Authenticator
}

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() == k.host {
		return k.auth, nil
	}
	return authn.Anonymous, nil
}

func TestBasicAuthUpstream(t *testing.T) {
	up := newUpstream(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	push(t, up, "private/x", "v1", 1024, 1, remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"}))

	_, anon, _ := newCache(t, up, nil)
	if _, err := pull(t, anon, "private/x:v1"); err == nil {
		t.Error("pull from a private upstream without credentials succeeded")
	}
	_, srv, _ := newCache(t, up, func(cfg *Config) {
		cfg.Keychain = staticKeychain{host: up.host(), auth: &authn.Basic{Username: "ci", Password: "s3cret"}}
	})
	if _, err := pull(t, srv, "private/x:v1"); err != nil {
		t.Fatalf("pull with credentials from the keychain: %v", err)
	}
}

func TestTLSUpstreamWithExtraCA(t *testing.T) {
	up := newUpstream(t, true, nil)
	push(t, up, "app", "v1", 1024, 1)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
	tlsCfg := func(extra []byte) func(*Config) {
		return func(cfg *Config) {
			cfg.Upstreams = map[string]Upstream{"origin.test": {URL: up.URL}}
			cfg.Insecure = nil
			cfg.ExtraCA = extra
		}
	}
	_, srv, _ := newCache(t, up, tlsCfg(ca))
	if _, err := pull(t, srv, "app:v1"); err != nil {
		t.Fatalf("pull from a TLS upstream with its CA: %v", err)
	}
	n := up.total()
	_, untrusting, _ := newCache(t, up, tlsCfg(nil))
	if _, err := pull(t, untrusting, "app:v1"); err == nil {
		t.Fatal("pull from a TLS upstream whose CA is not trusted succeeded")
	}
	if up.total() != n {
		t.Errorf("a request reached the untrusted upstream")
	}
}

func TestPlainHTTPUpstreamOnlyWhenInsecure(t *testing.T) {
	up := newUpstream(t, false, nil)
	push(t, up, "app", "v1", 1024, 1)
	pushed := up.total()
	_, err := New(Config{Dir: t.TempDir(), Upstreams: map[string]Upstream{"o": {URL: up.URL}}})
	if !errors.Is(err, ErrInsecure) {
		t.Fatalf("New with a plain-HTTP upstream not listed insecure: %v, want ErrInsecure", err)
	}

	// A host named by ns is reached over HTTPS, never over plain HTTP,
	// unless listed.
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	get := func(srv *httptest.Server) int {
		resp, err := http.Get(srv.URL + "/v2/app/manifests/v1?ns=" + url.QueryEscape(up.host()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(srv); code == http.StatusOK {
		t.Error("manifest served from a plain-HTTP upstream not listed insecure")
	}
	if n := up.total() - pushed; n != 0 {
		t.Errorf("upstream answered %d requests from the cache, want none", n)
	}

	c2, err := New(Config{Dir: t.TempDir(), Insecure: []string{up.host()}})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(c2)
	defer srv2.Close()
	if code := get(srv2); code != http.StatusOK {
		t.Errorf("manifest from an upstream listed insecure: status %d", code)
	}
}

func TestNamespacePicksUpstream(t *testing.T) {
	one := newUpstream(t, false, nil)
	two := newUpstream(t, false, nil)
	imgOne := push(t, one, "app", "v1", 1024, 1)
	imgTwo := push(t, two, "app", "v1", 1024, 1)
	c, err := New(Config{Dir: t.TempDir(), Insecure: []string{one.host(), two.host()}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	for _, tc := range []struct {
		up  *upstreamServer
		img v1.Image
	}{{one, imgOne}, {two, imgTwo}} {
		resp, err := http.Get(srv.URL + "/v2/app/manifests/v1?ns=" + url.QueryEscape(tc.up.host()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got, want := resp.Header.Get("Docker-Content-Digest"), mustDigest(t, tc.img).String(); resp.StatusCode != http.StatusOK || got != want {
			t.Errorf("ns=%s: status %d digest %s, want 200 %s", tc.up.host(), resp.StatusCode, got, want)
		}
	}
	// Without ns and without a default, nothing to pull from.
	resp, err := http.Get(srv.URL + "/v2/app/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no ns, no default: status %d, want 400", resp.StatusCode)
	}
	for _, bad := range []string{"..", "a/b", "x@y"} {
		resp, err := http.Get(srv.URL + "/v2/app/manifests/v1?ns=" + url.QueryEscape(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("ns=%q: status %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestMirrorUpstreamGetsNamespace(t *testing.T) {
	var gotNS atomic.Value
	up := newUpstream(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				gotNS.Store(r.URL.Query().Get("ns"))
			}
			h.ServeHTTP(w, r)
		})
	})
	push(t, up, "app", "v1", 1024, 1)
	c, err := New(Config{Dir: t.TempDir(), Upstreams: map[string]Upstream{"*": {URL: up.URL, Mirror: true}}, Insecure: []string{up.host()}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v2/app/manifests/v1?ns=ghcr.io")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ns, _ := gotNS.Load().(string); ns != "ghcr.io" {
		t.Errorf("mirror upstream got ns=%q, want ghcr.io", ns)
	}
}

func TestInsecureHostForms(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir(), Insecure: []string{"reg.test", "mirror.test:80", "local.test:5000"}})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"reg.test": true, "reg.test:80": true, "mirror.test": true, "mirror.test:80": true,
		"local.test:5000": true, "local.test": false, "other.test": false,
	} {
		if got := c.insecure[host]; got != want {
			t.Errorf("insecure[%s] = %v, want %v", host, got, want)
		}
	}
}

// insecureRouter serves h as the daemon does: requests under /insecure/ with
// AllowPlainHTTP, the others as they come.
func insecureRouter(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/insecure/"); ok {
			r2 := r.WithContext(AllowPlainHTTP(r.Context()))
			r2.URL = new(url.URL)
			*r2.URL = *r.URL
			r2.URL.Path = "/" + rest
			r2.URL.RawPath = ""
			r = r2
		}
		h.ServeHTTP(w, r)
	})
}

func TestAllowPlainHTTP(t *testing.T) {
	up := newUpstream(t, false, nil)
	img := push(t, up, "app", "v1", 1024, 1)
	pushed := up.total()
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(insecureRouter(c))
	defer srv.Close()
	get := func(prefix string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + prefix + "/v2/app/manifests/v1?ns=" + url.QueryEscape(up.host()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Docker-Content-Digest")
	}
	if code, _ := get(""); code == http.StatusOK {
		t.Error("manifest served from a plain-HTTP upstream without AllowPlainHTTP")
	}
	if n := up.total() - pushed; n != 0 {
		t.Errorf("the upstream answered %d plain-HTTP requests made without AllowPlainHTTP", n)
	}
	if code, d := get("/insecure"); code != http.StatusOK || d != mustDigest(t, img).String() {
		t.Fatalf("with AllowPlainHTTP: %d %s, want 200 %s", code, d, mustDigest(t, img))
	}
	reached := up.total()
	// Neither the transport nor the tag it resolved serve a request
	// without it.
	if code, _ := get(""); code == http.StatusOK {
		t.Error("manifest by tag served without AllowPlainHTTP after a request with it")
	}
	if n := up.total() - reached; n != 0 {
		t.Errorf("the upstream answered %d plain-HTTP requests made without AllowPlainHTTP after one with it", n)
	}
	if code, _ := get("/insecure"); code != http.StatusOK {
		t.Errorf("with AllowPlainHTTP again: %d", code)
	}
	// go-containerregistry falls back to http for loopback hosts by itself;
	// for others, the scheme picked is all there is.
	for _, plain := range []bool{false, true} {
		u, err := c.upstreamFor("reg.example", plain)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{false: "https", true: "http"}[plain]; u.base.Scheme != want || u.url("app", kindManifests, "v1") != want+"://reg.example/v2/app/manifests/v1" {
			t.Errorf("plain HTTP allowed %v: upstream %s, want %s", plain, u.url("app", kindManifests, "v1"), want)
		}
	}
}

func TestAllowPlainHTTPPassedToMirror(t *testing.T) {
	origin := newUpstream(t, false, nil)
	img := push(t, origin, "app", "v1", 1024, 1)
	// The peer cache pulls from origin over plain HTTP only when asked
	// under /insecure/.
	peer, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	peerSrv := httptest.NewServer(insecureRouter(peer))
	defer peerSrv.Close()
	peerHost := strings.TrimPrefix(peerSrv.URL, "http://")
	c, err := New(Config{Dir: t.TempDir(), Upstreams: map[string]Upstream{"*": {URL: peerSrv.URL, Mirror: true}}, Insecure: []string{peerHost}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(insecureRouter(c))
	defer srv.Close()
	get := func(prefix string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + prefix + "/v2/app/manifests/v1?ns=" + url.QueryEscape(origin.host()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Docker-Content-Digest")
	}
	if code, _ := get(""); code == http.StatusOK {
		t.Error("served through the peer without AllowPlainHTTP")
	}
	if code, d := get("/insecure"); code != http.StatusOK || d != mustDigest(t, img).String() {
		t.Errorf("through the peer with AllowPlainHTTP: %d %s, want 200 %s", code, d, mustDigest(t, img))
	}
}
