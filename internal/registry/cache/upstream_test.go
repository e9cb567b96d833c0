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
