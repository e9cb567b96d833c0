package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ephemera-dev/ephemera/internal/registry/cache"
)

// Paths of the daemon's own API, beside the distribution API.
const (
	StatusPath = "/_ephemera/status"
	PrunePath  = "/_ephemera/prune"
	// InsecurePrefix before /v2/ lets a request reach its ns over plain
	// HTTP: hosts.toml of a cluster created with --insecure-registry HOST
	// names the mirror as http://ADDR/insecure.
	InsecurePrefix = "/insecure"
)

// Router is the daemon's HTTP API, routing each request by its ns query
// parameter (which containerd adds to every request to a mirror):
//
//   - /v2/... with a registry host as ns: the pull-through cache (GET, HEAD),
//     or a push into the cache for that host (cache import; other methods,
//     with the daemon's token);
//   - /insecure/v2/...: the same, allowed to reach ns over plain HTTP;
//   - /v2/... without ns, or with ns naming the daemon itself (localhost:PORT,
//     127.0.0.1:PORT, [::1]:PORT with the daemon's port): the local registry;
//   - GET /_ephemera/status: Status as JSON;
//   - POST /_ephemera/prune?size=BYTES: prunes the cache to BYTES (0 or
//     none empties it) and answers Status; needs the daemon's token.
type Router struct {
	// Cache is the pull-through cache.
	Cache *cache.Cache
	// Local is the local registry (read and write).
	Local http.Handler
	// Push stores a push for registry ns in the cache.
	Push func(w http.ResponseWriter, r *http.Request, ns string)
	// AllowPlainHTTP marks a request's context as allowed to reach its
	// upstream over plain HTTP.
	AllowPlainHTTP func(context.Context) context.Context
	// Status describes the daemon.
	Status func() Status
	// Mirrors, when set, are the only registries the cache serves: every
	// cluster reaches the daemon, and must not make it fetch from
	// anywhere else (the host's loopback services, say). Nil serves any.
	Mirrors []string
	// InsecureAllowed says whether /insecure may reach ns over plain
	// HTTP: some cluster named it with --insecure-registry, or the
	// settings do. Nil allows every ns.
	InsecureAllowed func(ns string) bool
	// ForClusters makes the router the clusters' side: every cluster on
	// the host reaches it, so it serves pulls only (no push, to the
	// local registry or the cache; no prune) and a status without the
	// settings.
	ForClusters bool
	// Token authorizes pushes into the cache and prune (see token.go);
	// empty refuses them.
	Token string
	// LocalPort is the daemon's port: an ns of a loopback name with this
	// port (or none) is the local registry; with another port it is a
	// registry on the host's loopback served by the cache when Mirrors
	// has it, else the local registry too (a cluster made while the
	// daemon had another port). Zero: every loopback ns is the local
	// registry.
	LocalPort uint16
}

var _ http.Handler = (*Router)(nil)

// ServeHTTP implements http.Handler.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if rt.ForClusters && r.Method != http.MethodGet && r.Method != http.MethodHead {
		apiError(w, http.StatusForbidden, "DENIED", "clusters pull from the host's registry, they do not push or prune: push from the host ('ephemera push image', or docker push localhost:PORT/NAME:TAG)")
		return
	}
	switch p {
	case StatusPath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			apiError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "GET only")
			return
		}
		st := rt.Status()
		if rt.ForClusters {
			st.Settings, st.Dir = Settings{}, ""
		}
		writeJSON(w, st)
		return
	case PrunePath:
		if !authorized(r, rt.Token) {
			denied(w, "prune")
			return
		}
		rt.servePrune(w, r)
		return
	}
	insecure := false
	if rest, ok := strings.CutPrefix(p, InsecurePrefix+"/"); ok && (rest == "v2" || strings.HasPrefix(rest, "v2/")) {
		insecure = true
		r = r.Clone(r.Context())
		r.URL.Path = "/" + rest
		r.URL.RawPath = ""
		p = r.URL.Path
	}
	if p != "/v2" && !strings.HasPrefix(p, "/v2/") {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "not a distribution API path")
		return
	}
	ns := r.URL.Query().Get("ns")
	if ns == "" || rt.isSelf(ns) {
		rt.Local.ServeHTTP(w, r)
		return
	}
	if rt.Mirrors != nil && !slices.Contains(rt.Mirrors, ns) {
		apiError(w, http.StatusForbidden, "DENIED", fmt.Sprintf("this cache does not mirror %s: add it with 'ephemera registry configure --registry-mirror %s' (and restart the cache)", ns, ns))
		return
	}
	if insecure && rt.InsecureAllowed != nil && !rt.InsecureAllowed(ns) {
		apiError(w, http.StatusForbidden, "DENIED", fmt.Sprintf("no cluster named %s insecure: plain HTTP to it is refused (create the cluster with --insecure-registry %s, or 'ephemera registry configure --insecure-registry %s')", ns, ns, ns))
		return
	}
	if insecure && rt.AllowPlainHTTP != nil {
		r = r.WithContext(rt.AllowPlainHTTP(r.Context()))
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		rt.Cache.ServeHTTP(w, r)
		return
	}
	if !authorized(r, rt.Token) {
		denied(w, "a push into the cache for "+ns)
		return
	}
	rt.Push(w, r, ns)
}

// denied refuses what needs the daemon's token.
func denied(w http.ResponseWriter, what string) {
	apiError(w, http.StatusForbidden, "DENIED", what+" needs the daemon's token ("+tokenFile+" in its dir, root only): use 'ephemera registry import' or 'ephemera registry prune' on this host")
}

func (rt *Router) servePrune(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		apiError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "POST only")
		return
	}
	var limit int64
	if s := r.URL.Query().Get("size"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			apiError(w, http.StatusBadRequest, "SIZE_INVALID", fmt.Sprintf("size %q: want a number of bytes", s))
			return
		}
		limit = n
	}
	if err := rt.Cache.Prune(r.Context(), limit); err != nil {
		apiError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	writeJSON(w, rt.Status())
}

// isSelf reports whether ns names the daemon's local registry.
func (rt *Router) isSelf(ns string) bool {
	if !IsLocalHost(ns) {
		return false
	}
	_, port, err := net.SplitHostPort(ns)
	if err != nil || rt.LocalPort == 0 || port == strconv.Itoa(int(rt.LocalPort)) {
		return true
	}
	// A cluster made while the daemon had another port asks for that
	// one: still the local registry, unless a registry on the host's
	// loopback is mirrored under that name.
	return rt.Mirrors != nil && !slices.Contains(rt.Mirrors, ns)
}

// IsLocalHost reports whether a registry host names this host's local
// registry: localhost, 127.0.0.0/8 or ::1, with any port.
func IsLocalHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiError writes an error in the distribution API's JSON shape.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}
