package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCA returns a self-signed CA certificate in PEM.
func testCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestSettingsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	got, err := LoadSettings(filepath.Join(dir, "missing"))
	if err != nil || !cmp.Equal(got, Settings{}) {
		t.Fatalf("LoadSettings of a missing dir = %+v, %v; want zero settings", got, err)
	}
	want := Settings{
		CacheSize: 20 << 30, Upstream: "https://peer.example:5001", UpstreamUsername: "ci",
		UpstreamPasswordFile: "/run/secrets/pw", CAFiles: []string{"/etc/ca.pem"},
		Mirrors: []string{"registry.example.com:5000"}, Insecure: []string{"10.1.2.3:5000"},
	}
	if err := SaveSettings(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err = LoadSettings(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("settings after a round trip (-want +got):\n%s", d)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries after SaveSettings, want settings.json only", len(entries))
	}
	if err := os.WriteFile(filepath.Join(dir, settingsFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSettings(dir); err == nil || !strings.Contains(err.Error(), "configure --reset") {
		t.Errorf("LoadSettings of broken JSON: %v, want an error pointing at configure --reset", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"20Gi": 20 << 30, "500M": 500e6, "10G": 10e9, "0": 0, "1024": 1024, " 1Ki ": 1024} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "20GB", "-1Gi", "lots", "1.5.5"} {
		if _, err := ParseSize(in); err == nil || !strings.Contains(err.Error(), "like 20Gi") {
			t.Errorf("ParseSize(%q) error = %v, want one giving an example", in, err)
		}
	}
}

func TestMirroredHosts(t *testing.T) {
	s := Settings{Mirrors: []string{"quay.io", "registry.example.com", "registry.example.com"}}
	want := []string{"docker.io", "registry.k8s.io", "ghcr.io", "quay.io", "gcr.io", "registry.example.com"}
	if d := cmp.Diff(want, s.MirroredHosts()); d != "" {
		t.Errorf("MirroredHosts (-want +got):\n%s", d)
	}
}

func TestSettingsValidate(t *testing.T) {
	dir := t.TempDir()
	ca := writeFile(t, dir, "ca.pem", testCA(t))
	notPEM := writeFile(t, dir, "not.pem", "hello\n")
	pw := writeFile(t, dir, "pw", "s3cret\n")
	empty := writeFile(t, dir, "empty", "\n")
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name string
		s    Settings
		want []string // substrings of the error; none: valid
	}{
		{"zero", Settings{}, nil},
		{"full", Settings{CacheSize: 1, Upstream: "https://peer:5001", UpstreamUsername: "u", UpstreamPasswordFile: pw, CAFiles: []string{ca}, Mirrors: []string{"r.example.com:5000", "10.0.0.1"}}, nil},
		{"plain HTTP upstream named insecure", Settings{Upstream: "http://10.0.0.1:5001", Insecure: []string{"10.0.0.1:5001"}}, nil},
		{"token", Settings{Upstream: "https://peer", UpstreamTokenFile: pw}, nil},
		{"negative size", Settings{CacheSize: -1}, []string{"negative", "20Gi"}},
		{"no scheme", Settings{Upstream: "peer.example:5001"}, []string{"no scheme", "https://HOST"}},
		{"ftp", Settings{Upstream: "ftp://peer"}, []string{"not http or https"}},
		{"path", Settings{Upstream: "https://peer/v2/"}, []string{"no path"}},
		{"user in URL", Settings{Upstream: "https://u:p@peer"}, []string{"password or token file"}},
		{"plain HTTP not insecure", Settings{Upstream: "http://10.0.0.1:5001"}, []string{"not listed as insecure", "--insecure-registry 10.0.0.1:5001"}},
		{"mirror with scheme", Settings{Mirrors: []string{"https://r.example.com"}}, []string{`mirror "https://r.example.com" is not a registry host`, "no scheme"}},
		{"mirror with path", Settings{Mirrors: []string{"r.example.com/team"}}, []string{"not a registry host"}},
		{"insecure with scheme", Settings{Insecure: []string{"http://10.0.0.1:5000"}}, []string{"insecure registry", "HOST:PORT"}},
		{"CA missing", Settings{CAFiles: []string{missing}}, []string{"CA file", "no such file"}},
		{"CA not PEM", Settings{CAFiles: []string{notPEM}}, []string{"holds no PEM certificate"}},
		{"credentials without upstream", Settings{UpstreamTokenFile: pw}, []string{"without an upstream"}},
		{"username without password", Settings{Upstream: "https://peer", UpstreamUsername: "u"}, []string{"needs both"}},
		{"password and token", Settings{Upstream: "https://peer", UpstreamUsername: "u", UpstreamPasswordFile: pw, UpstreamTokenFile: pw}, []string{"not both"}},
		{"password file missing", Settings{Upstream: "https://peer", UpstreamUsername: "u", UpstreamPasswordFile: missing}, []string{"credentials file", "no such file"}},
		{"token file empty", Settings{Upstream: "https://peer", UpstreamTokenFile: empty}, []string{"is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want an error with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestCacheConfig(t *testing.T) {
	dir := t.TempDir()
	ca := testCA(t)
	caFile := writeFile(t, dir, "ca.pem", ca)
	pw := writeFile(t, dir, "pw", "s3cret\n")
	s := Settings{CacheSize: 1 << 30, Upstream: "https://peer:5001/", UpstreamUsername: "ci", UpstreamPasswordFile: pw,
		CAFiles: []string{caFile}, Insecure: []string{"10.0.0.1:5000"}}
	cfg, err := s.CacheConfig("/r")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dir != "/r/cache" || cfg.MaxBytes != 1<<30 || !cmp.Equal(cfg.Insecure, s.Insecure) || !strings.Contains(string(cfg.ExtraCA), strings.TrimSpace(ca)) {
		t.Errorf("CacheConfig = dir %s, max %d, insecure %v, CA %d bytes", cfg.Dir, cfg.MaxBytes, cfg.Insecure, len(cfg.ExtraCA))
	}
	if cfg.Keychain != authn.DefaultKeychain {
		t.Errorf("Keychain is not authn.DefaultKeychain")
	}
	up, ok := cfg.Upstreams["*"]
	if !ok || len(cfg.Upstreams) != 1 || up.URL != "https://peer:5001" || !up.Mirror {
		t.Fatalf("Upstreams = %+v, want * -> https://peer:5001 as a mirror", cfg.Upstreams)
	}
	got, _ := up.Auth.Authorization()
	if got.Username != "ci" || got.Password != "s3cret" {
		t.Errorf("upstream auth = %+v, want ci/s3cret", got)
	}

	tok := writeFile(t, dir, "token", "abc\n")
	cfg, err = Settings{Upstream: "https://peer", UpstreamTokenFile: tok}.CacheConfig("/r")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = cfg.Upstreams["*"].Auth.Authorization()
	if got.RegistryToken != "abc" {
		t.Errorf("upstream auth = %+v, want bearer abc", got)
	}
	cfg, err = Settings{}.CacheConfig("/r")
	if err != nil || cfg.Upstreams != nil {
		t.Errorf("CacheConfig of zero settings: upstreams %v, %v; want none", cfg.Upstreams, err)
	}
}
