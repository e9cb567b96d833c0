package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

func TestStoreEvictsLeastRecentlyUsedButNotInUse(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s, err := openStore(t.TempDir(), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	put := func(b byte) string {
		t.Helper()
		clock.Add(time.Minute)
		h, _, err := s.put(bytes.NewReader(bytes.Repeat([]byte{b}, 100)), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a, b, c := put('a'), put('b'), put('c')
	clock.Add(time.Minute)
	f, release, err := s.open(a) // a in use and now the most recent
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// b is the least recently used; keep c.
	if n, freed, err := s.evict(200, c); err != nil || n != 1 || freed != 100 {
		t.Fatalf("evict to 200: %d blobs %d bytes %v, want b only", n, freed, err)
	}
	if s.has(b) || !s.has(a) || !s.has(c) {
		t.Errorf("after eviction: a %v b %v c %v, want a and c", s.has(a), s.has(b), s.has(c))
	}
	// a is pinned: emptying the store leaves it.
	if _, _, err := s.evict(0, ""); err != nil {
		t.Fatal(err)
	}
	if !s.has(a) || s.has(c) {
		t.Errorf("evict(0) with a open: a %v c %v, want a only", s.has(a), s.has(c))
	}
	release()
	if _, _, err := s.evict(0, ""); err != nil || s.has(a) {
		t.Errorf("evict(0) after release: a %v, err %v", s.has(a), err)
	}
}

func TestStorePutVerifies(t *testing.T) {
	s, err := openStore(t.TempDir(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("layer")
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	if _, _, err := s.put(bytes.NewReader([]byte("layeR")), want, nil); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("put of other content: %v, want ErrDigestMismatch", err)
	}
	if s.has(want) {
		t.Fatal("mismatching content stored")
	}
	if got, n, err := s.put(bytes.NewReader(content), want, nil); err != nil || got != want || n != int64(len(content)) {
		t.Fatalf("put: %s %d %v", got, n, err)
	}
}

func TestManifestType(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}`, typeDockerV2},
		{`{"schemaVersion":2,"config":{},"layers":[]}`, typeOCIManifest},
		{`{"schemaVersion":2,"manifests":[]}`, typeOCIIndex},
		{`{"schemaVersion":1,"fsLayers":[]}`, typeDockerSigned},
	} {
		if got := manifestType([]byte(tc.body)); got != tc.want {
			t.Errorf("manifestType(%s) = %s, want %s", tc.body, got, tc.want)
		}
	}
}

func TestSplitPath(t *testing.T) {
	for _, tc := range []struct{ in, repo, kind, ref string }{
		{"x/manifests/v1", "x", "manifests", "v1"},
		{"a/b/blobs/sha256:00", "a/b", "blobs", "sha256:00"},
		{"blobs/manifests/v1", "blobs", "manifests", "v1"},
		{"x/tags/list", "", "", ""},
		{"x/manifests/", "", "", ""},
	} {
		repo, kind, ref, _ := splitPath(tc.in)
		if repo != tc.repo || kind != tc.kind || ref != tc.ref {
			t.Errorf("splitPath(%q) = %q %q %q, want %q %q %q", tc.in, repo, kind, ref, tc.repo, tc.kind, tc.ref)
		}
	}
}
