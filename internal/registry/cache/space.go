package cache

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// space is content served and pushed without an upstream, from a store and
// its tags: the local registry's, or a cache's content for one upstream (what
// `ephemera registry import` pushes there). Blobs are global to the store;
// tags are kept per upstream key.
type space struct {
	store   *store
	tags    *tags
	uploads *uploads
	// ns is the upstream key tags are kept under: "" for the local
	// registry.
	ns  string
	now func() time.Time
	// stored, when not nil, is told of content just stored (the cache
	// enforces its cap).
	stored func(hex string)
}

// Route kinds besides manifests and blobs.
const (
	kindUploads = "uploads"
	kindTags    = "tags"
)

// parseRoute splits <name>/tags/list, <name>/blobs/uploads/[<id>] and
// <name>/(manifests|blobs)/<ref>.
func parseRoute(rest string) (repo, kind, ref string, ok bool) {
	if repo, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return repo, kindTags, "", repo != ""
	}
	if repo, ok := strings.CutSuffix(rest, "/blobs/uploads"); ok {
		return repo, kindUploads, "", repo != ""
	}
	if i := strings.LastIndex(rest, "/blobs/uploads/"); i > 0 {
		id := rest[i+len("/blobs/uploads/"):]
		return rest[:i], kindUploads, id, !strings.Contains(id, "/")
	}
	return splitPath(rest)
}

// serve serves the distribution API from the store: /v2/, manifests by tag
// or digest, blobs and tag lists (GET and HEAD), blob uploads (POST, PATCH,
// PUT, GET of their status and DELETE) and manifest pushes (PUT).
func (s *space) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	repo, kind, ref, ok := route(w, r, parseRoute)
	if !ok {
		return
	}
	switch {
	case kind == kindUploads:
		s.serveUpload(w, r, repo, ref)
	case kind == kindTags && r.Method == http.MethodGet:
		s.serveTagList(w, r, repo)
	case kind == kindManifests && read:
		s.serveManifest(w, r, repo, ref)
	case kind == kindManifests && r.Method == http.MethodPut:
		s.putManifest(w, r, repo, ref)
	case kind == kindBlobs && read:
		s.serveBlob(w, r, ref)
	default:
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", fmt.Sprintf("%s of %s", r.Method, r.URL.Path))
	}
}

// parseDigest returns the hex of a sha256 digest, writing DIGEST_INVALID
// when it is not one.
func parseDigest(w http.ResponseWriter, d string) (string, bool) {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || !hexDigest.MatchString(hex) {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("unsupported digest %q (sha256 only)", d))
		return "", false
	}
	return hex, true
}

func (s *space) serveManifest(w http.ResponseWriter, r *http.Request, repo, ref string) {
	hex, isDigest := strings.CutPrefix(ref, "sha256:")
	switch {
	case isDigest && hexDigest.MatchString(hex):
	case !isDigest && tagName.MatchString(ref):
		e, ok := s.tags.get(tagKey(s.ns, repo, ref))
		if !ok {
			writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", fmt.Sprintf("no tag %s:%s", repo, ref))
			return
		}
		hex = e.hex
	default:
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", fmt.Sprintf("invalid reference %q", ref))
		return
	}
	if !serveStored(w, r, s.store, kindManifests, hex, nil) {
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", fmt.Sprintf("no manifest %s@sha256:%s", repo, hex))
	}
}

func (s *space) serveBlob(w http.ResponseWriter, r *http.Request, ref string) {
	hex, ok := parseDigest(w, ref)
	if !ok {
		return
	}
	if !serveStored(w, r, s.store, kindBlobs, hex, nil) {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", fmt.Sprintf("no blob sha256:%s", hex))
	}
}

// serveTagList answers GET /v2/<name>/tags/list, with the n and last
// parameters of pagination.
func (s *space) serveTagList(w http.ResponseWriter, r *http.Request, repo string) {
	all, err := s.tags.list(s.ns, repo)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	if len(all) == 0 {
		writeError(w, http.StatusNotFound, "NAME_UNKNOWN", fmt.Sprintf("no tags in repository %q", repo))
		return
	}
	q := r.URL.Query()
	tags := all[:0:0]
	for _, t := range all {
		if last := q.Get("last"); last == "" || t > last {
			tags = append(tags, t)
		}
	}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n >= 0 && n < len(tags) {
		tags = tags[:n]
		if n > 0 {
			next := url.Values{"n": {strconv.Itoa(n)}, "last": {tags[n-1]}}
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, location(r, "/v2/"+repo+"/tags/list", next)))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": tags})
}

// location is the URL path p, with the query q (may be nil), as the client
// names this handler: with the prefix a router stripped from the request path
// (seen in RequestURI), and the request's ns query parameter kept so the next
// request of an upload comes back to the same place.
func location(r *http.Request, p string, q url.Values) string {
	u := url.URL{Path: p}
	if orig, err := url.ParseRequestURI(r.RequestURI); err == nil {
		if prefix, ok := strings.CutSuffix(orig.Path, r.URL.Path); ok {
			u.Path = prefix + p
		}
	}
	if ns := r.URL.Query().Get("ns"); ns != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("ns", ns)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
