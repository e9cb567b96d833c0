package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"time"
)

var (
	repoName = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagName  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// maxManifest bounds a manifest's size, as registries do.
const maxManifest = 4 << 20

// Media types of manifests.
const (
	typeOCIIndex     = "application/vnd.oci.image.index.v1+json"
	typeOCIManifest  = "application/vnd.oci.image.manifest.v1+json"
	typeDockerList   = "application/vnd.docker.distribution.manifest.list.v2+json"
	typeDockerV2     = "application/vnd.docker.distribution.manifest.v2+json"
	typeDockerSigned = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// acceptManifests is sent upstream whatever the client accepts, so that a
// tag resolves to the same manifest for every client.
var acceptManifests = strings.Join([]string{typeOCIIndex, typeDockerList, typeOCIManifest, typeDockerV2}, ", ")

// ServeHTTP serves GET and HEAD of /v2/, /v2/<name>/manifests/<reference>
// and /v2/<name>/blobs/<digest>. The ns query parameter picks the upstream.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry is a read-only cache")
		return
	}
	repo, kind, ref, ok := route(w, r, splitPath)
	if !ok {
		return
	}
	up, err := c.upstreamFor(r.URL.Query().Get("ns"), plainHTTPAllowed(r.Context()))
	if err != nil {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", err.Error())
		return
	}
	hex, isDigest := strings.CutPrefix(ref, "sha256:")
	switch {
	case isDigest && hexDigest.MatchString(hex):
		c.serveDigest(w, r, up, repo, kind, hex)
	case kind == kindManifests && tagName.MatchString(ref):
		c.serveTag(w, r, up, repo, ref)
	case kind == kindBlobs:
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("unsupported digest %q (sha256 only)", ref))
	default:
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", fmt.Sprintf("invalid reference %q", ref))
	}
}

const (
	kindManifests = "manifests"
	kindBlobs     = "blobs"
)

// splitPath splits <name>/(manifests|blobs)/<ref>.
func splitPath(rest string) (repo, kind, ref string, ok bool) {
	for _, k := range []string{kindManifests, kindBlobs} {
		sep := "/" + k + "/"
		if i := strings.LastIndex(rest, sep); i > 0 {
			ref = rest[i+len(sep):]
			if ref == "" || strings.Contains(ref, "/") {
				return "", "", "", false
			}
			return rest[:i], k, ref, true
		}
	}
	return "", "", "", false
}

// serveStored serves a stored blob or manifest, counting a hit if hit is
// set; false when the store lacks it.
func (c *Cache) serveStored(w http.ResponseWriter, r *http.Request, kind, hex string, hit bool) bool {
	return serveStored(w, r, c.store, kind, hex, func() {
		if hit {
			c.hits.Add(1) // before the client has it all
		}
	})
}

// serveStored serves a blob or manifest of st; false when st lacks it.
// opened, when not nil, is called once it is open, before it is sent.
func serveStored(w http.ResponseWriter, r *http.Request, st *store, kind, hex string, opened func()) bool {
	f, release, err := st.open(hex)
	if err != nil {
		return false
	}
	if opened != nil {
		opened()
	}
	defer release()
	defer f.Close()
	h := w.Header()
	h.Set("Docker-Content-Digest", "sha256:"+hex)
	h.Set("Etag", `"sha256:`+hex+`"`)
	if kind == kindBlobs {
		h.Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, f)
		return true
	}
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil || len(b) > maxManifest {
		h.Del("Docker-Content-Digest")
		h.Del("Etag")
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "not a manifest")
		return true
	}
	h.Set("Content-Type", manifestType(b))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	return true
}

// manifestType is a stored manifest's media type: its mediaType field, or
// what its fields say when it has none (OCI makes the field optional).
func manifestType(b []byte) string {
	var m struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(b, &m) != nil {
		return typeOCIManifest
	}
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.SchemaVersion == 1:
		return typeDockerSigned
	case m.Manifests != nil:
		return typeOCIIndex
	}
	return typeOCIManifest
}

// serveTag serves a manifest by tag: resolved upstream once per TagTTL, from
// the last known digest when the upstream cannot be asked.
func (c *Cache) serveTag(w http.ResponseWriter, r *http.Request, up *upstream, repo, tag string) {
	key := tagKey(up.key, repo, tag)
	now := c.cfg.Now()
	last, known := c.tags.get(key)
	if known && !last.resolved.IsZero() && now.Sub(last.resolved) < c.cfg.TagTTL && c.store.has(last.hex) {
		c.serveDigest(w, r, up, repo, kindManifests, last.hex)
		return
	}
	hex, err := c.resolve(r.Context(), up, repo, tag)
	if err != nil {
		var ue *upstreamError
		notFound := errors.As(err, &ue) && ue.status == http.StatusNotFound
		if !notFound && known && c.store.has(last.hex) {
			c.stale.Add(1)
			c.serveDigest(w, r, up, repo, kindManifests, last.hex)
			return
		}
		writeUpstreamError(w, kindManifests, err)
		return
	}
	// Losing the record costs a resolve next time, nothing more.
	_ = c.tags.set(key, hex, now)
	c.serveDigest(w, r, up, repo, kindManifests, hex)
}

// writeError writes an error in the distribution API's JSON shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}

// writeUpstreamError maps an upstream failure: not found stays not found,
// anything else is a bad gateway (a containerd mirror client then tries the
// next host).
func writeUpstreamError(w http.ResponseWriter, kind string, err error) {
	var ue *upstreamError
	if errors.As(err, &ue) && ue.status == http.StatusNotFound {
		code := "MANIFEST_UNKNOWN"
		if kind == kindBlobs {
			code = "BLOB_UNKNOWN"
		}
		writeError(w, http.StatusNotFound, code, err.Error())
		return
	}
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", err.Error())
		return
	}
	writeError(w, http.StatusBadGateway, "UNAVAILABLE", err.Error())
}

// route answers GET and HEAD of /v2/ itself (the API version check) and
// parses any other path /v2/REST with split into a repository, a kind and a
// reference. For a path it does not serve (another method on /v2/, no
// route, an invalid repository name) it writes the error and returns ok
// false.
func route(w http.ResponseWriter, r *http.Request, split func(rest string) (repo, kind, ref string, ok bool)) (repo, kind, ref string, ok bool) {
	p := r.URL.Path
	if p == "/v2/" || p == "/v2" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" of /v2/")
			return "", "", "", false
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
		return "", "", "", false
	}
	rest, found := strings.CutPrefix(p, "/v2/")
	if found {
		repo, kind, ref, found = split(rest)
	}
	if !found {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "not a distribution API path")
		return "", "", "", false
	}
	if len(repo) > 255 || !repoName.MatchString(repo) {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("invalid repository name %q", repo))
		return "", "", "", false
	}
	return repo, kind, ref, true
}
