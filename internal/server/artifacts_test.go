package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/ephemera-dev/ephemera/internal/artifact"
)

// fakeAuthorizer is a FAKE of the management cluster's TokenReview and
// SubjectAccessReview (unit tests have no API server; the e2e tests use
// the real ones): tokens name users, and users the namespaces where they
// may get TestRuns ("" for all of them).
type fakeAuthorizer struct {
	users  map[string]string   // token → user
	allow  map[string][]string // user → namespaces
	err    error               // returned with Denied when set
	authnE error               // returned with Unauthenticated when set
	asked  []string            // namespaces asked about
}

func (f *fakeAuthorizer) Authorize(r *http.Request, namespace string) (Access, string, error) {
	f.asked = append(f.asked, namespace)
	if f.authnE != nil {
		return Unauthenticated, "", f.authnE
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	user, known := f.users[token]
	if !ok || !known {
		return Unauthenticated, "", nil
	}
	if f.err != nil {
		return Denied, user, f.err
	}
	for _, ns := range f.allow[user] {
		if ns == namespace || ns == "" {
			return Allowed, user, nil
		}
	}
	return Denied, user, nil
}

func TestArtifactsHandler(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "artifacts")
	for path, data := range map[string]string{
		"team-a/e2e/test.log":        "--- PASS: TestInstall",
		"team-a/e2e/junit/junit.xml": "<testsuites/>",
		"team-a/other/test.log":      "the other run",
		"team-b/e2e/test.log":        "team b's log",
	} {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A runner may leave links out of its dir: they are not followed.
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("server secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "team-a/e2e/escape")); err != nil {
		t.Fatal(err)
	}
	osRoot, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { osRoot.Close() })

	signer, err := artifact.NewSigner([]byte(strings.Repeat("k", artifact.KeySize)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	link := signer.RunPath("team-a", "e2e", now.Add(time.Hour))
	expired := signer.RunPath("team-a", "e2e", now.Add(-time.Second))
	forged := strings.Replace(link, "/team-a/e2e/", "/team-b/e2e/", 1)

	authz := &fakeAuthorizer{
		users: map[string]string{"alice-token": "alice", "bob-token": "bob", "admin-token": "admin"},
		allow: map[string][]string{"alice": {"team-a"}, "admin": {""}},
	}
	h := newArtifactsHandler(osRoot.FS(), signer, authz, func() time.Time { return now }, logr.Discard())

	for _, tc := range []struct {
		name, method, path, token string
		wantCode                  int
		wantBody                  string
	}{
		{"no credentials", "GET", "/artifacts/team-a/e2e/test.log", "", 401, "send a bearer token"},
		{"an unknown token", "GET", "/artifacts/team-a/e2e/test.log", "nobody", 401, "did not accept the bearer token"},
		{"a user of another namespace", "GET", "/artifacts/team-a/e2e/test.log", "bob-token", 403, `bob may not get testruns.ephemera.dev in namespace "team-a"`},
		{"a user of the namespace", "GET", "/artifacts/team-a/e2e/test.log", "alice-token", 200, "--- PASS: TestInstall"},
		{"a user of the namespace, HEAD", "HEAD", "/artifacts/team-a/e2e/test.log", "alice-token", 200, ""},
		{"a user of the namespace, its listing", "GET", "/artifacts/team-a/", "alice-token", 200, `<a href="e2e/">e2e/</a>`},
		{"a user of the namespace, another one", "GET", "/artifacts/team-b/e2e/test.log", "alice-token", 403, `alice may not get testruns.ephemera.dev in namespace "team-b"`},
		{"a user of one namespace, the root listing", "GET", "/artifacts/", "alice-token", 403, "alice may not get testruns.ephemera.dev in every namespace"},
		{"a user of every namespace, the root listing", "GET", "/artifacts/", "admin-token", 200, `<a href="team-b/">team-b/</a>`},
		// os.Root refuses the link; the file server answers 500.
		{"a link out of the dir", "GET", "/artifacts/team-a/e2e/escape", "alice-token", 500, ""},
		{"not a namespace", "GET", "/artifacts/../secret", "admin-token", 404, ""},
		{"a write", "PUT", "/artifacts/team-a/e2e/test.log", "alice-token", 405, "read-only"},
		{"a signed link", "GET", link, "", 200, `<a href="test.log">test.log</a>`},
		{"a file by a signed link", "GET", link + "test.log", "", 200, "--- PASS: TestInstall"},
		{"a subdir by a signed link", "GET", link + "junit/junit.xml", "", 200, "<testsuites/>"},
		{"a signed link to the dir without its slash", "GET", strings.TrimSuffix(link, "/"), "", 301, ""},
		{"a signed link out of its run", "GET", link + "../other/test.log", "", 403, "bad artefacts link signature"},
		{"a signed link out of the root", "GET", link + "escape", "", 500, ""},
		{"an expired link", "GET", expired + "test.log", "", 403, "expired"},
		{"a forged link", "GET", forged + "test.log", "", 403, "bad artefacts link signature"},
		{"a signed link without a signature", "GET", "/artifacts/_signed/1700003600/team-a/e2e/", "", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "http://server"+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tc.wantCode || !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, rec.Code, body, tc.wantCode, tc.wantBody)
			}
			if strings.Contains(string(body), "server secret") {
				t.Errorf("%s %s served a file out of the root", tc.method, tc.path)
			}
			if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if rec.Code == http.StatusOK && rec.Header().Get("Content-Security-Policy") != "sandbox" {
				t.Errorf("an artefact served without CSP sandbox: %v", rec.Header())
			}
		})
	}
	if got, want := strings.Join(authz.asked, ","), "team-a,team-a,team-a,team-a,team-a,team-b,,,team-a"; got != want {
		t.Errorf("namespaces asked about: %q, want %q", got, want)
	}

	t.Run("the API cannot be asked", func(t *testing.T) {
		for _, tc := range []struct {
			authz    *fakeAuthorizer
			wantCode int
		}{
			{&fakeAuthorizer{authnE: errors.New("connection refused")}, http.StatusUnauthorized},
			{&fakeAuthorizer{users: map[string]string{"t": "alice"}, err: errors.New("connection refused")}, http.StatusServiceUnavailable},
		} {
			h := newArtifactsHandler(osRoot.FS(), signer, tc.authz, func() time.Time { return now }, logr.Discard())
			req := httptest.NewRequest("GET", "http://server/artifacts/team-a/e2e/test.log", nil)
			req.Header.Set("Authorization", "Bearer t")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantCode {
				t.Errorf("got %d, want %d", rec.Code, tc.wantCode)
			}
		}
	})
}

func TestEnsureSigningKey(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(Scheme()).Build()
	key, err := ensureSigningKey(ctx, c, "default", "ephemera-artifacts-signing-key")
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != artifact.KeySize {
		t.Fatalf("key of %d bytes", len(key))
	}
	again, err := ensureSigningKey(ctx, c, "default", "ephemera-artifacts-signing-key")
	if err != nil || string(again) != string(key) {
		t.Errorf("a second start got another key (%v): restarts would end every link", err)
	}
	other, err := ensureSigningKey(ctx, c, "default", "other-artifacts-signing-key")
	if err != nil || string(other) == string(key) {
		t.Errorf("another instance got the same key (%v)", err)
	}
	short := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "short"}, Data: map[string][]byte{SigningKeyKey: []byte("tiny")}}
	if err := c.Create(ctx, short); err != nil {
		t.Fatal(err)
	}
	if _, err := ensureSigningKey(ctx, c, "default", "short"); err == nil || !strings.Contains(err.Error(), "delete the Secret") {
		t.Errorf("a 4-byte key: %v", err)
	}
	stored := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "ephemera-artifacts-signing-key"}, stored); err != nil || string(stored.Data[SigningKeyKey]) != string(key) {
		t.Errorf("the key is not in its Secret: %v", err)
	}
}

func TestMetricsSecure(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": false,
		"127.0.0.2:8080": false,
		"[::1]:8080":     false,
		"localhost:8080": false,
		":8080":          true,
		"0.0.0.0:8080":   true,
		"[::]:8080":      true,
		"10.0.0.5:8080":  true,
		"ci-host:8080":   true,
		"garbage":        true,
	} {
		if got := MetricsSecure(addr); got != want {
			t.Errorf("MetricsSecure(%q) = %v, want %v", addr, got, want)
		}
	}
	if got := MetricsURL("127.0.0.1:8080"); got != "http://127.0.0.1:8080" {
		t.Errorf("MetricsURL on loopback: %s", got)
	}
	if got := MetricsURL("10.0.0.5:8443"); got != "https://10.0.0.5:8443" {
		t.Errorf("MetricsURL off loopback: %s", got)
	}
}

func TestMetricsOptions(t *testing.T) {
	artifacts := newArtifactsHandler(os.DirFS(t.TempDir()), nil, &fakeAuthorizer{}, time.Now, logr.Discard())
	extra := map[string]http.Handler{artifact.Path: artifacts}
	if o := metricsOptions(Options{MetricsAddr: "127.0.0.1:8080"}, extra); o.SecureServing || o.FilterProvider != nil {
		t.Errorf("loopback: secure %v, filter %v; want plain HTTP as before", o.SecureServing, o.FilterProvider != nil)
	}
	o := metricsOptions(Options{MetricsAddr: "0.0.0.0:8443", MetricsCertDir: "/certs"}, extra)
	if !o.SecureServing || o.FilterProvider == nil || o.CertDir != "/certs" {
		t.Fatalf("off loopback: secure %v, filter %v, cert dir %q", o.SecureServing, o.FilterProvider != nil, o.CertDir)
	}
	// The filter's clients are made without a request; none is sent here.
	filter, err := o.FilterProvider(&rest.Config{Host: "https://127.0.0.1:1"}, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := filter(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics") }))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	metrics.ServeHTTP(rec, httptest.NewRequest("GET", "https://server/metrics", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d %q, want 401", rec.Code, rec.Body)
	}
	if h, err := filter(logr.Discard(), artifacts); err != nil || h != http.Handler(artifacts) {
		t.Errorf("the artefacts handler was wrapped (%v): signed links carry no token", err)
	}
}
