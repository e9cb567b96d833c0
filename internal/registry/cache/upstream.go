package cache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrInsecure is returned for a plain-HTTP request to a host not listed in
// Config.Insecure.
var ErrInsecure = errors.New("plain HTTP to a registry not listed as insecure")

// dockerHub is where docker.io is served from.
const dockerHub = "registry-1.docker.io"

// plainHTTPSuffix ends the tag key of an upstream reached over plain HTTP by
// a request's AllowPlainHTTP: what it resolved is not trusted by requests
// that must use HTTPS. No host contains it.
const plainHTTPSuffix = "+http"

// upstream is one registry the cache pulls from, resolved for a request.
type upstream struct {
	key    string   // the Upstreams key (or ns) it came from: tags are kept per key
	base   *url.URL // scheme://host[:port]
	mirror bool     // pass ns on
	ns     string   // the namespace asked for, passed on to a mirror
	auth   authn.Authenticator
	// plain is set when the request's AllowPlainHTTP made base plain HTTP
	// (base.Host may then be reached over HTTP by this request only), or,
	// for a mirror, is passed on to it (its /insecure/v2/ path).
	plain bool
}

type plainHTTPKey struct{}

// AllowPlainHTTP returns a context under which a request to the cache may
// reach its ns upstream over plain HTTP (http://HOST) even when HOST is not in
// Config.Insecure, and a mirror upstream (Upstream.Mirror, another host's
// ephemera registry) is asked under /insecure/v2/ to do the same. Other
// requests for that host still use HTTPS: the tags the two resolve are kept
// apart; content by digest, verified, is shared.
func AllowPlainHTTP(ctx context.Context) context.Context {
	return context.WithValue(ctx, plainHTTPKey{}, true)
}

func plainHTTPAllowed(ctx context.Context) bool {
	ok, _ := ctx.Value(plainHTTPKey{}).(bool)
	return ok
}

type plainHostKey struct{}

// withPlainHost lets the requests made under ctx for up reach its host over
// plain HTTP, when up was picked under AllowPlainHTTP.
func withPlainHost(ctx context.Context, up *upstream) context.Context {
	if !up.plain || up.mirror {
		return ctx
	}
	return context.WithValue(ctx, plainHostKey{}, up.base.Host)
}

// plainHostAllowed is whether ctx lets a request reach host over plain HTTP
// (HOST and HOST:80 are one address).
func plainHostAllowed(ctx context.Context, host string) bool {
	h, _ := ctx.Value(plainHostKey{}).(string)
	return h != "" && strings.TrimSuffix(h, ":80") == strings.TrimSuffix(host, ":80")
}

// upstreamFor picks the upstream for a request's ns query parameter (empty
// when the client named none); plain is whether the request carries
// AllowPlainHTTP.
func (c *Cache) upstreamFor(ns string, plain bool) (*upstream, error) {
	if ns != "" && !validHost(ns) {
		return nil, fmt.Errorf("ns %q is not a registry host", ns)
	}
	key := ns
	if ns == "" {
		key = c.cfg.Default
		if key == "" {
			return nil, errors.New("no ns query parameter and no default upstream")
		}
	}
	u, ok := c.cfg.Upstreams[key]
	if !ok {
		u, ok = c.cfg.Upstreams["*"]
	}
	if !ok {
		// A registry host named by ns: its own address.
		host := key
		if host == "docker.io" || host == "index.docker.io" {
			host = dockerHub
		}
		scheme := "https"
		if c.insecure[host] {
			scheme = "http"
			plain = false // every request may
		} else if plain {
			scheme = "http"
		}
		u = Upstream{URL: scheme + "://" + host}
	} else if !u.Mirror {
		plain = false // a configured URL is used as configured
	}
	base, err := parseUpstreamURL(u.URL)
	if err != nil {
		return nil, err
	}
	up := &upstream{key: key, base: base, mirror: u.Mirror, ns: ns, auth: u.Auth, plain: plain}
	if up.mirror && up.ns == "" {
		up.ns = key
	}
	if plain {
		up.key += plainHTTPSuffix
	}
	return up, nil
}

func parseUpstreamURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", s, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("upstream %q: want https://HOST[:PORT] or http://HOST[:PORT]", s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// validHost accepts HOST[:PORT] with DNS name or IP characters only, so an ns
// never turns into a path, a user or another URL part.
func validHost(h string) bool {
	if h == "" || len(h) > 255 || h[0] == '.' || h[0] == '-' || strings.Contains(h, "..") {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r)) {
			return false
		}
	}
	return true
}

// repoPath is repo as the upstream names it: Docker Hub's official images
// live under library/.
func (u *upstream) repoPath(repo string) string {
	if u.base.Host == dockerHub && !strings.Contains(repo, "/") {
		return "library/" + repo
	}
	return repo
}

// url is the upstream address of /v2/<repo>/<kind>/<ref>.
func (u *upstream) url(repo, kind, ref string) string {
	p := "/v2/" + u.repoPath(repo) + "/" + kind + "/" + ref
	if u.mirror && u.plain {
		p = "/insecure" + p
	}
	v := &url.URL{Scheme: u.base.Scheme, Host: u.base.Host, Path: p}
	if u.mirror && u.ns != "" {
		v.RawQuery = url.Values{"ns": {u.ns}}.Encode()
	}
	return v.String()
}

// baseTransport is the HTTP transport to every upstream: TLS verified
// against the system roots plus extraCA, plain HTTP refused except to the
// insecure hosts.
func baseTransport(extraCA []byte, insecure map[string]bool) (http.RoundTripper, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(extraCA) > 0 && !roots.AppendCertsFromPEM(extraCA) {
		return nil, errors.New("extra CA: no PEM certificate found")
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &schemeGuard{inner: t, insecure: insecure}, nil
}

// schemeGuard refuses plain HTTP to hosts not named insecure, whatever asks
// for it (go-containerregistry tries http for loopback and private
// addresses, and a redirect may point there), but to the host a request's
// context allows (withPlainHost).
type schemeGuard struct {
	inner    http.RoundTripper
	insecure map[string]bool
}

func (g *schemeGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" && !g.insecure[r.URL.Host] && !plainHostAllowed(r.Context(), r.URL.Host) {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, fmt.Errorf("%s %s: %w", r.Method, r.URL.Redacted(), ErrInsecure)
	}
	return g.inner.RoundTrip(r)
}

// transports keeps one authenticated transport per upstream and repository:
// bearer tokens are scoped to a repository.
type transports struct {
	base     http.RoundTripper
	keychain authn.Keychain
	insecure map[string]bool

	mu sync.Mutex
	m  map[string]http.RoundTripper
}

// maxTransports bounds the transports kept.
const maxTransports = 1024

// get returns the transport for u and repo; the ping and authentication are
// made under ctx. Transports are kept by scheme, host and repository, so one
// made for plain HTTP is never used for HTTPS.
func (ts *transports) get(ctx context.Context, u *upstream, repo string) (http.RoundTripper, error) {
	ctx = withPlainHost(ctx, u)
	key := u.base.String() + "/" + repo
	ts.mu.Lock()
	t, ok := ts.m[key]
	ts.mu.Unlock()
	if ok {
		return t, nil
	}
	var opts []name.Option
	if u.base.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.base.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.base, err)
	}
	auth := u.auth
	if auth == nil {
		auth, err = ts.keychain.Resolve(keychainTarget(reg))
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", u.base.Host, err)
		}
	}
	scope := reg.Repo(u.repoPath(repo)).Scope(transport.PullScope)
	t, err = transport.NewWithContext(ctx, reg, auth, ts.base, []string{scope})
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.base, err)
	}
	ts.mu.Lock()
	if len(ts.m) >= maxTransports {
		// Every cluster reaches the cache: random repository names must
		// not grow it without bound. Dropping them all costs a ping and
		// a token each for the repositories pulled next.
		clear(ts.m)
	}
	ts.m[key] = t
	ts.mu.Unlock()
	return t, nil
}

// keychainTarget is the registry credentials are looked up under: Docker
// Hub's are kept under index.docker.io in a Docker config.json.
func keychainTarget(reg name.Registry) authn.Resource {
	if reg.RegistryStr() == dockerHub {
		r, _ := name.NewRegistry(name.DefaultRegistry)
		return r
	}
	return reg
}

// forget drops a transport that failed, so the next request pings and
// authenticates again.
func (ts *transports) forget(u *upstream, repo string) {
	ts.mu.Lock()
	delete(ts.m, u.base.String()+"/"+repo)
	ts.mu.Unlock()
}
