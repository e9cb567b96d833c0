package cache

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// importServer serves ServePush of c for ns, as the daemon does for pushes
// with ?ns=.
func importServer(t *testing.T, c *Cache, ns string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.ServePush(w, r, ns)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestServePushThenPullWithUpstreamDown(t *testing.T) {
	up := newUpstream(t, false, nil)
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	c, srv, _ := newCache(t, up, func(cfg *Config) { cfg.Now = clock.Now })
	imp := importServer(t, c, "origin.test")

	img := randomImage(t, 4096, 2)
	pushTo(t, imp, "team/app:v1", img)
	if n := up.total(); n != 0 {
		t.Errorf("the import sent %d requests upstream, want none", n)
	}
	if st := c.Stats(); st.Blobs != 4 { // manifest, config, 2 layers
		t.Errorf("cache holds %d blobs after the import, want 4", st.Blobs)
	}

	// Within the tag TTL: a hit, the upstream not asked.
	got, err := pull(t, srv, "team/app:v1")
	if err != nil {
		t.Fatalf("pull of the imported tag: %v", err)
	}
	if g, w := mustDigest(t, got), mustDigest(t, img); g != w {
		t.Fatalf("pulled %s, imported %s", g, w)
	}
	if n := up.total(); n != 0 {
		t.Errorf("pull of an imported tag within its TTL sent %d requests upstream, want none", n)
	}
	if st := c.Stats(); st.Misses != 0 || st.Hits == 0 {
		t.Errorf("stats %+v: want hits and no misses", st)
	}

	// Past the TTL with the upstream down: served stale.
	up.Close()
	clock.Add(time.Hour)
	if _, err := pull(t, srv, "team/app:v1"); err != nil {
		t.Fatalf("pull of the imported tag with the upstream down: %v", err)
	}
	if c.Stats().Stale == 0 {
		t.Error("stale = 0 after serving an imported tag the upstream could not confirm")
	}
	// A tag never imported is not there.
	if _, err := pull(t, srv, "team/app:v2"); err == nil {
		t.Error("pull of a tag never imported nor upstream succeeded")
	}
}

func TestServePushKeepsTagsPerNamespace(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	one := importServer(t, c, "one.test")
	two := importServer(t, c, "two.test:5000")
	img := randomImage(t, 1024, 1)
	pushTo(t, one, "app:v1", img)

	d := mustDigest(t, img).String()
	if r := do(t, one, http.MethodHead, "/v2/app/manifests/v1", nil); r.status != http.StatusOK || r.header.Get("Docker-Content-Digest") != d {
		t.Errorf("HEAD of the tag in its ns: %d %q, want 200 %s", r.status, r.header.Get("Docker-Content-Digest"), d)
	}
	if r := do(t, two, http.MethodHead, "/v2/app/manifests/v1", nil); r.status != http.StatusNotFound {
		t.Errorf("HEAD of the tag in another ns: %d, want 404", r.status)
	}
	// Content by digest is global; a blob not stored is not fetched.
	if r := do(t, two, http.MethodHead, "/v2/app/manifests/"+d, nil); r.status != http.StatusOK {
		t.Errorf("HEAD of the manifest by digest in another ns: %d, want 200", r.status)
	}
	if r := do(t, two, http.MethodHead, "/v2/app/blobs/"+digestOf([]byte("absent")), nil); r.status != http.StatusNotFound {
		t.Errorf("HEAD of an absent blob: %d, want 404", r.status)
	}
	if r := do(t, one, http.MethodPost, "/v2/app/blobs/uploads/?digest="+digestOf([]byte("x")), []byte("y")); r.status != http.StatusBadRequest || r.code() != "DIGEST_INVALID" {
		t.Errorf("import of a blob with a wrong digest: %d %s, want 400 DIGEST_INVALID", r.status, r.code())
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.ServePush(w, r, "a/b") }))
	defer bad.Close()
	if r := do(t, bad, http.MethodPost, "/v2/app/blobs/uploads/", nil); r.status != http.StatusBadRequest || r.code() != "NAME_INVALID" {
		t.Errorf("import under ns a/b: %d %s, want 400 NAME_INVALID", r.status, r.code())
	}
}
