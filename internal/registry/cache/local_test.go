package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func newLocal(t *testing.T, dir string) (*Local, *httptest.Server) {
	t.Helper()
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	return l, srv
}

func ref(t *testing.T, srv *httptest.Server, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pushTo writes img to srv as repo:tag with go-containerregistry's client.
func pushTo(t *testing.T, srv *httptest.Server, s string, img v1.Image) {
	t.Helper()
	if err := remote.Write(ref(t, srv, s), img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatalf("push %s: %v", s, err)
	}
}

func randomImage(t *testing.T, size, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (r reply) code() string {
	var e struct{ Errors []struct{ Code string } }
	if json.Unmarshal([]byte(r.body), &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// do sends one request to srv; path may be a Location the server gave.
func do(t *testing.T, srv *httptest.Server, method, path string, body []byte, hdr ...string) reply {
	t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = srv.URL + path
	}
	req, err := http.NewRequest(method, path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// withQuery adds k=v to a Location.
func withQuery(loc, kv string) string {
	if strings.Contains(loc, "?") {
		return loc + "&" + kv
	}
	return loc + "?" + kv
}

func TestLocalPushThenPullImageAndIndex(t *testing.T) {
	dir := t.TempDir()
	l, srv := newLocal(t, dir)
	img := randomImage(t, 4096, 3)
	pushTo(t, srv, "team/app:v1", img)

	got, err := pull(t, srv, "team/app:v1")
	if err != nil {
		t.Fatalf("pull by tag: %v", err)
	}
	if g, w := mustDigest(t, got), mustDigest(t, img); g != w {
		t.Fatalf("pulled %s, pushed %s", g, w)
	}
	if _, err := pull(t, srv, "team/app@"+mustDigest(t, img).String()); err != nil {
		t.Fatalf("pull by digest: %v", err)
	}
	if l.Bytes() < 3*4096 {
		t.Errorf("Bytes() = %d, want at least the layers' %d", l.Bytes(), 3*4096)
	}

	idx, err := random.Index(1024, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	r := ref(t, srv, "multi:v1")
	if err := remote.WriteIndex(r, idx, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatalf("push index: %v", err)
	}
	gotIdx, err := remote.Index(r, remote.WithTransport(srv.Client().Transport))
	if err != nil {
		t.Fatalf("pull index: %v", err)
	}
	gd, _ := gotIdx.Digest()
	wd, _ := idx.Digest()
	if gd != wd {
		t.Fatalf("pulled index %s, pushed %s", gd, wd)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range im.Manifests {
		if _, err := pull(t, srv, "multi@"+m.Digest.String()); err != nil {
			t.Errorf("pull the index's image %s: %v", m.Digest, err)
		}
	}
	assertNoTemp(t, dir)
}

func TestLocalChunkedUpload(t *testing.T) {
	l, srv := newLocal(t, t.TempDir())
	blob := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	chunks := [][]byte{blob[:10000], blob[10000:40000], blob[40000:]}

	start := do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/", nil)
	loc := start.header.Get("Location")
	if start.status != http.StatusAccepted || loc == "" || start.header.Get("Docker-Upload-UUID") == "" {
		t.Fatalf("POST upload: %d Location %q UUID %q, want 202 and both", start.status, loc, start.header.Get("Docker-Upload-UUID"))
	}
	if !strings.HasPrefix(loc, "/v2/app/blobs/uploads/") {
		t.Errorf("Location %q, want under /v2/app/blobs/uploads/", loc)
	}
	p := do(t, srv, http.MethodPatch, loc, chunks[0], "Content-Range", "0-9999", "Content-Type", "application/octet-stream")
	if p.status != http.StatusAccepted || p.header.Get("Range") != "0-9999" {
		t.Fatalf("PATCH 1: %d Range %q, want 202 0-9999 (%s)", p.status, p.header.Get("Range"), p.body)
	}
	// A chunk that does not start where the upload is: refused, not
	// appended.
	if bad := do(t, srv, http.MethodPatch, p.header.Get("Location"), chunks[1], "Content-Range", "5000-34999"); bad.status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("PATCH at a wrong offset: %d, want 416", bad.status)
	}
	p = do(t, srv, http.MethodPatch, p.header.Get("Location"), chunks[1], "Content-Range", "10000-39999")
	if p.status != http.StatusAccepted || p.header.Get("Range") != "0-39999" {
		t.Fatalf("PATCH 2: %d Range %q, want 202 0-39999 (%s)", p.status, p.header.Get("Range"), p.body)
	}
	if st := do(t, srv, http.MethodGet, p.header.Get("Location"), nil); st.status != http.StatusNoContent || st.header.Get("Range") != "0-39999" {
		t.Errorf("upload status: %d Range %q, want 204 0-39999", st.status, st.header.Get("Range"))
	}
	d := digestOf(blob)
	fin := do(t, srv, http.MethodPut, withQuery(p.header.Get("Location"), "digest="+d), chunks[2])
	if fin.status != http.StatusCreated || fin.header.Get("Docker-Content-Digest") != d {
		t.Fatalf("PUT: %d digest %q, want 201 %s (%s)", fin.status, fin.header.Get("Docker-Content-Digest"), d, fin.body)
	}
	got := do(t, srv, http.MethodGet, "/v2/app/blobs/"+d, nil)
	if got.status != http.StatusOK || got.body != string(blob) || got.header.Get("Docker-Content-Digest") != d {
		t.Errorf("GET the blob: %d, %d bytes, digest %q", got.status, len(got.body), got.header.Get("Docker-Content-Digest"))
	}
	if l.Bytes() != int64(len(blob)) {
		t.Errorf("Bytes() = %d, want %d", l.Bytes(), len(blob))
	}
	if again := do(t, srv, http.MethodPatch, loc, []byte("x")); again.status != http.StatusNotFound || again.code() != "BLOB_UPLOAD_UNKNOWN" {
		t.Errorf("PATCH of a completed upload: %d %s, want 404 BLOB_UPLOAD_UNKNOWN", again.status, again.code())
	}

	// Monolithic: POST ?digest= with the body.
	small := []byte("a small blob")
	mono := do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/?digest="+digestOf(small), small)
	if mono.status != http.StatusCreated || mono.header.Get("Docker-Content-Digest") != digestOf(small) {
		t.Fatalf("monolithic POST: %d %q (%s)", mono.status, mono.header.Get("Docker-Content-Digest"), mono.body)
	}
	if h := do(t, srv, http.MethodHead, "/v2/other/blobs/"+digestOf(small), nil); h.status != http.StatusOK {
		t.Errorf("HEAD of the blob from another repository: %d, want 200 (blobs are global)", h.status)
	}

	// A mount of a stored blob is done at once; of an unknown one, a
	// session starts.
	m := do(t, srv, http.MethodPost, "/v2/third/blobs/uploads/?mount="+d+"&from=app", nil)
	if m.status != http.StatusCreated || m.header.Get("Docker-Content-Digest") != d {
		t.Errorf("mount of a stored blob: %d %q, want 201 %s", m.status, m.header.Get("Docker-Content-Digest"), d)
	}
	unknown := digestOf([]byte("never pushed"))
	if m := do(t, srv, http.MethodPost, "/v2/third/blobs/uploads/?mount="+unknown+"&from=app", nil); m.status != http.StatusAccepted || m.header.Get("Location") == "" {
		t.Errorf("mount of an unknown blob: %d, want 202 and a session", m.status)
	}
	// A session is bound to its repository.
	s := do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/", nil)
	other := strings.Replace(s.header.Get("Location"), "/v2/app/", "/v2/third/", 1)
	if r := do(t, srv, http.MethodPatch, other, []byte("x")); r.status != http.StatusNotFound {
		t.Errorf("PATCH of app's upload under third: %d, want 404", r.status)
	}
}

func TestLocalWrongDigestStoresNothing(t *testing.T) {
	dir := t.TempDir()
	l, srv := newLocal(t, dir)
	content := []byte("the real content")
	wrong := digestOf([]byte("something else"))

	if r := do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/?digest="+wrong, content); r.status != http.StatusBadRequest || r.code() != "DIGEST_INVALID" {
		t.Errorf("monolithic POST with a wrong digest: %d %s, want 400 DIGEST_INVALID", r.status, r.code())
	}
	start := do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/", nil)
	p := do(t, srv, http.MethodPatch, start.header.Get("Location"), content)
	if r := do(t, srv, http.MethodPut, withQuery(p.header.Get("Location"), "digest="+wrong), nil); r.status != http.StatusBadRequest || r.code() != "DIGEST_INVALID" {
		t.Errorf("PUT of a session with a wrong digest: %d %s, want 400 DIGEST_INVALID", r.status, r.code())
	}
	if r := do(t, srv, http.MethodPut, withQuery(p.header.Get("Location"), "digest="+digestOf(content)), nil); r.status != http.StatusNotFound {
		t.Errorf("the session refused for its digest is still open: PUT %d, want 404", r.status)
	}
	if r := do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/?digest=sha512:00", content); r.status != http.StatusBadRequest || r.code() != "DIGEST_INVALID" {
		t.Errorf("POST with a sha512 digest: %d %s, want 400 DIGEST_INVALID", r.status, r.code())
	}

	// A manifest pushed by a digest it does not have.
	img := randomImage(t, 1024, 1)
	pushTo(t, srv, "app:v1", img)
	before := l.Bytes()
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	changed := append(bytes.TrimRight(slices.Clone(raw), "\n"), ' ')
	if r := do(t, srv, http.MethodPut, "/v2/app/manifests/"+digestOf(raw), changed, "Content-Type", string(mt)); r.status != http.StatusBadRequest || r.code() != "DIGEST_INVALID" {
		t.Errorf("PUT of a manifest under another digest: %d %s, want 400 DIGEST_INVALID", r.status, r.code())
	}
	if r := do(t, srv, http.MethodHead, "/v2/app/manifests/"+digestOf(changed), nil); r.status != http.StatusNotFound {
		t.Errorf("the refused manifest is served: HEAD %d", r.status)
	}
	if l.Bytes() != before {
		t.Errorf("Bytes() = %d after refused pushes, want %d", l.Bytes(), before)
	}
	for _, d := range []string{wrong, digestOf(content)} {
		if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))); err == nil {
			t.Errorf("blob %s stored", d)
		}
	}
	assertNoTemp(t, dir)
}

func TestLocalManifestWithMissingContentRefused(t *testing.T) {
	_, srv := newLocal(t, t.TempDir())
	img := randomImage(t, 1024, 2)
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	put := func(ref string, b []byte, mt string) reply {
		return do(t, srv, http.MethodPut, "/v2/app/manifests/"+ref, b, "Content-Type", mt)
	}
	if r := put("v1", raw, string(mt)); r.status != http.StatusBadRequest || r.code() != "MANIFEST_BLOB_UNKNOWN" {
		t.Fatalf("manifest without its blobs: %d %s, want 400 MANIFEST_BLOB_UNKNOWN", r.status, r.code())
	}
	// Its config and all but one layer.
	cfg, _ := img.RawConfigFile()
	do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/?digest="+digestOf(cfg), cfg)
	ls, _ := img.Layers()
	rc, _ := ls[0].Compressed()
	b, _ := io.ReadAll(rc)
	do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/?digest="+digestOf(b), b)
	if r := put("v1", raw, string(mt)); r.status != http.StatusBadRequest || r.code() != "MANIFEST_BLOB_UNKNOWN" {
		t.Fatalf("manifest missing a layer: %d %s, want 400 MANIFEST_BLOB_UNKNOWN", r.status, r.code())
	}
	if r := do(t, srv, http.MethodGet, "/v2/app/manifests/v1", nil); r.status != http.StatusNotFound || r.code() != "MANIFEST_UNKNOWN" {
		t.Errorf("tag of a refused manifest: %d %s, want 404 MANIFEST_UNKNOWN", r.status, r.code())
	}

	// An index whose image was not pushed.
	idx, err := random.Index(512, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	rawIdx, _ := idx.RawManifest()
	imt, _ := idx.MediaType()
	if r := put("all", rawIdx, string(imt)); r.status != http.StatusBadRequest || r.code() != "MANIFEST_BLOB_UNKNOWN" {
		t.Errorf("index without its manifests: %d %s, want 400 MANIFEST_BLOB_UNKNOWN", r.status, r.code())
	}
	if r := put("old", []byte(`{"schemaVersion":1,"name":"app","tag":"old","fsLayers":[]}`), typeDockerSigned); r.status != http.StatusBadRequest || r.code() != "MANIFEST_INVALID" {
		t.Errorf("schema 1 manifest: %d %s, want 400 MANIFEST_INVALID", r.status, r.code())
	}

	// Once the last layer is there, the manifest is taken.
	rc, _ = ls[1].Compressed()
	b, _ = io.ReadAll(rc)
	do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/?digest="+digestOf(b), b)
	if r := put("v1", raw, string(mt)); r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != digestOf(raw) {
		t.Errorf("manifest with all its blobs: %d %q (%s)", r.status, r.header.Get("Docker-Content-Digest"), r.body)
	}
}

func TestLocalTagsList(t *testing.T) {
	l, srv := newLocal(t, t.TempDir())
	pushTo(t, srv, "app:v2", randomImage(t, 256, 1))
	pushTo(t, srv, "app:v1", randomImage(t, 256, 1))
	// A repository named like a tag of another: kept apart.
	pushTo(t, srv, "app/v1:x", randomImage(t, 256, 1))

	tags, err := remote.List(ref(t, srv, "app").Context(), remote.WithTransport(srv.Client().Transport))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tags, []string{"v1", "v2"}) {
		t.Errorf("tags of app = %q, want [v1 v2]", tags)
	}
	r := do(t, srv, http.MethodGet, "/v2/app/v1/tags/list", nil)
	if r.status != http.StatusOK || !strings.Contains(r.body, `"tags":["x"]`) {
		t.Errorf("tags of app/v1: %d %s", r.status, r.body)
	}
	r = do(t, srv, http.MethodGet, "/v2/app/tags/list?n=1", nil)
	if !strings.Contains(r.body, `"tags":["v1"]`) || !strings.Contains(r.header.Get("Link"), "last=v1") {
		t.Errorf("first page of one: %s Link %q", r.body, r.header.Get("Link"))
	}
	if r := do(t, srv, http.MethodGet, "/v2/none/tags/list", nil); r.status != http.StatusNotFound || r.code() != "NAME_UNKNOWN" {
		t.Errorf("tags of an unknown repository: %d %s, want 404 NAME_UNKNOWN", r.status, r.code())
	}
	if got, want := l.Images(), []string{"app/v1:x", "app:v1", "app:v2"}; !slices.Equal(got, want) {
		t.Errorf("Images() = %q, want %q", got, want)
	}
}

func TestLocalReopen(t *testing.T) {
	dir := t.TempDir()
	_, srv := newLocal(t, dir)
	img := randomImage(t, 2048, 2)
	pushTo(t, srv, "app:v1", img)
	// An upload left half done.
	start := do(t, srv, http.MethodPost, "/v2/app/blobs/uploads/", nil)
	do(t, srv, http.MethodPatch, start.header.Get("Location"), []byte("half a layer"))
	srv.Close()
	if n := len(nonBlobs(t, dir)); n != 1 {
		t.Fatalf("%d files besides blobs in the store during an upload, want its temp file", n)
	}

	l2, srv2 := newLocal(t, dir)
	got, err := pull(t, srv2, "app:v1")
	if err != nil {
		t.Fatalf("pull from the reopened registry: %v", err)
	}
	if g, w := mustDigest(t, got), mustDigest(t, img); g != w {
		t.Errorf("pulled %s, pushed %s", g, w)
	}
	if got := l2.Images(); !slices.Equal(got, []string{"app:v1"}) {
		t.Errorf("Images() = %q after reopening", got)
	}
	if l2.Bytes() == 0 {
		t.Error("Bytes() = 0 after reopening")
	}
	if left := nonBlobs(t, dir); len(left) != 0 {
		t.Errorf("files left by an interrupted upload after reopening: %q", left)
	}
}

// nonBlobs lists the files in dir's store not named by a digest.
func nonBlobs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !hexDigest.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestLocalLocationKeepsPrefixAndNamespace(t *testing.T) {
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/sub", l))
	defer srv.Close()
	start := do(t, srv, http.MethodPost, "/sub/v2/app/blobs/uploads/?ns=localhost:5001", nil)
	loc := start.header.Get("Location")
	if start.status != http.StatusAccepted || !strings.HasPrefix(loc, "/sub/v2/app/blobs/uploads/") || !strings.HasSuffix(loc, "?ns=localhost%3A5001") {
		t.Fatalf("POST under a prefix: %d Location %q, want /sub/v2/app/blobs/uploads/<id>?ns=localhost%%3A5001", start.status, loc)
	}
	content := []byte("layer")
	if r := do(t, srv, http.MethodPut, withQuery(loc, "digest="+digestOf(content)), content); r.status != http.StatusCreated {
		t.Errorf("PUT at the Location: %d (%s)", r.status, r.body)
	}
}

func TestLocalRejectsBadRequests(t *testing.T) {
	_, srv := newLocal(t, t.TempDir())
	for _, tc := range []struct {
		method, path string
		want         int
		code         string
	}{
		{http.MethodGet, "/v2/", http.StatusOK, ""},
		{http.MethodGet, "/v2/X/manifests/v1", http.StatusBadRequest, "NAME_INVALID"},
		{http.MethodGet, "/v2/app/manifests/v1", http.StatusNotFound, "MANIFEST_UNKNOWN"},
		{http.MethodGet, "/v2/app/manifests/" + digestOf(nil), http.StatusNotFound, "MANIFEST_UNKNOWN"},
		{http.MethodGet, "/v2/app/blobs/" + digestOf(nil), http.StatusNotFound, "BLOB_UNKNOWN"},
		{http.MethodGet, "/v2/app/blobs/sha512:00", http.StatusBadRequest, "DIGEST_INVALID"},
		{http.MethodPut, "/v2/app/manifests/bad@tag", http.StatusBadRequest, "TAG_INVALID"},
		{http.MethodPut, "/v2/app/manifests/v1", http.StatusBadRequest, "MANIFEST_INVALID"},
		{http.MethodPatch, "/v2/app/blobs/uploads/nope", http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
		{http.MethodDelete, "/v2/app/manifests/v1", http.StatusMethodNotAllowed, "UNSUPPORTED"},
		{http.MethodGet, "/other", http.StatusNotFound, "NOT_FOUND"},
	} {
		r := do(t, srv, tc.method, tc.path, nil)
		if r.status != tc.want || r.code() != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, r.status, r.code(), tc.want, tc.code)
		}
	}
}
