package registry

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ephemera-dev/ephemera/internal/registry/cache"
)

// DefaultMirrors are the registries every real-node cluster pulls through
// the cache; Settings.Mirrors adds to them. Other registries are pulled
// directly.
var DefaultMirrors = []string{"docker.io", "registry.k8s.io", "ghcr.io", "quay.io", "gcr.io"}

// DefaultPort is the daemon's first choice of loopback port; when it is
// taken the next free one up to DefaultPort+PortRange-1 is used.
const (
	DefaultPort = 5001
	PortRange   = 100
)

// DirEnv names the registry dir when --registry-dir is not given.
const DirEnv = "EPHEMERA_REGISTRY_DIR"

// Files and directories of a registry dir.
const (
	settingsFile = "settings.json"
	daemonFile   = "daemon.json"
	daemonLock   = "daemon.lock"
	// portFile keeps the loopback port the daemon had last.
	portFile  = "daemon.port"
	startLock = "start.lock"
	logFile   = "daemon.log"
	cacheDir  = "cache"
	localDir  = "local"
)

// Settings are the daemon's configuration, kept in R/settings.json by
// `ephemera registry configure` and read whenever the daemon starts.
type Settings struct {
	// CacheSize caps the pull-through cache's store in bytes; 0 means no cap.
	CacheSize int64 `json:"cacheSize,omitempty"`
	// Upstream is the URL of another host's ephemera registry; every
	// registry is then pulled through it.
	Upstream string `json:"upstream,omitempty"`
	// UpstreamUsername and UpstreamPasswordFile give basic auth to Upstream.
	UpstreamUsername     string `json:"upstreamUsername,omitempty"`
	UpstreamPasswordFile string `json:"upstreamPasswordFile,omitempty"`
	// UpstreamTokenFile holds a bearer token for Upstream.
	UpstreamTokenFile string `json:"upstreamTokenFile,omitempty"`
	// CAFiles are PEM files of CA certificates trusted for TLS upstreams
	// besides the system roots.
	CAFiles []string `json:"caFiles,omitempty"`
	// Mirrors are registries (HOST[:PORT]) pulled through the cache besides
	// DefaultMirrors.
	Mirrors []string `json:"mirrors,omitempty"`
	// Insecure are the HOST[:PORT] upstreams that may be reached over plain
	// HTTP.
	Insecure []string `json:"insecure,omitempty"`
}

// DefaultDir returns the registry dir: $EPHEMERA_REGISTRY_DIR, else
// cacheDir/registry.
func DefaultDir(cacheDir string) string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	return filepath.Join(cacheDir, "registry")
}

// LoadSettings reads dir's settings; a missing file is zero Settings.
func LoadSettings(dir string) (Settings, error) {
	var s Settings
	b, err := os.ReadFile(filepath.Join(dir, settingsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read registry settings: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read registry settings %s: %w (fix it or run 'ephemera registry configure --reset')", filepath.Join(dir, settingsFile), err)
	}
	return s, nil
}

// SaveSettings writes dir's settings atomically, creating dir.
func SaveSettings(dir string, s Settings) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, settingsFile), append(b, '\n')); err != nil {
		return fmt.Errorf("save registry settings: %w", err)
	}
	return nil
}

// writeFileAtomic writes path through a temporary file renamed into place,
// creating its directory.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// MirroredHosts returns DefaultMirrors and then Mirrors, without duplicates:
// the registries clusters pull through the cache.
func (s Settings) MirroredHosts() []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range append(append([]string{}, DefaultMirrors...), s.Mirrors...) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// ParseSize parses a size like a Kubernetes quantity: 20Gi, 500M, 1e9, or
// 0 for no cap.
func ParseSize(s string) (int64, error) {
	q, err := resource.ParseQuantity(strings.TrimSpace(s))
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("size %q: want a size like 20Gi, 500Mi or 10G (0 for no cap)", s)
	}
	n, ok := q.AsInt64()
	if !ok {
		n = q.Value()
	}
	return n, nil
}

// Validate checks the settings and the files they name, saying what is
// wrong with each and how to fix it.
func (s Settings) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.CacheSize < 0 {
		bad("cache size %d is negative: give a size like 20Gi, or 0 for no cap", s.CacheSize)
	}
	insecure := map[string]bool{}
	for _, h := range s.Insecure {
		if !isHost(h) {
			bad("insecure registry %q is not a registry host: write HOST:PORT, like 10.1.2.3:5000 (no scheme or path)", h)
		}
		insecure[h] = true
	}
	for _, h := range s.Mirrors {
		if !isHost(h) {
			bad("mirror %q is not a registry host: write HOST or HOST:PORT, like registry.example.com:5000 (no scheme or path)", h)
		}
	}
	if s.Upstream != "" {
		u, err := url.Parse(s.Upstream)
		switch {
		case err != nil || u.Scheme == "" || u.Host == "" || !strings.Contains(s.Upstream, "://"):
			bad("upstream %q has no scheme: write https://HOST[:PORT] (or http://HOST[:PORT] with --insecure-registry HOST[:PORT])", s.Upstream)
		case u.Scheme != "https" && u.Scheme != "http":
			bad("upstream %q: scheme %s is not http or https: write https://HOST[:PORT]", s.Upstream, u.Scheme)
		case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil:
			bad("upstream %q: want only https://HOST[:PORT], with no path, query or user (credentials go in --registry-upstream-username and a password or token file)", s.Upstream)
		case u.Scheme == "http" && !insecure[u.Host]:
			bad("upstream %q is plain HTTP but %s is not listed as insecure: add --insecure-registry %s, or use https://", s.Upstream, u.Host, u.Host)
		}
	}
	if s.Upstream == "" && (s.UpstreamUsername != "" || s.UpstreamPasswordFile != "" || s.UpstreamTokenFile != "") {
		bad("upstream credentials are given without an upstream: add --registry-upstream URL")
	}
	if (s.UpstreamUsername == "") != (s.UpstreamPasswordFile == "") {
		bad("basic auth to the upstream needs both --registry-upstream-username and --registry-upstream-password-file")
	}
	if s.UpstreamPasswordFile != "" && s.UpstreamTokenFile != "" {
		bad("give either a password file or a token file for the upstream, not both")
	}
	for _, f := range []string{s.UpstreamPasswordFile, s.UpstreamTokenFile} {
		if f == "" {
			continue
		}
		if _, err := readSecret(f); err != nil {
			bad("%w", err)
		}
	}
	for _, f := range s.CAFiles {
		if _, err := readCA(f); err != nil {
			bad("%w", err)
		}
	}
	return errors.Join(errs...)
}

// isHost accepts HOST[:PORT]: a DNS name or IP with an optional port, no
// scheme, user or path.
func isHost(h string) bool {
	if h == "" || strings.ContainsAny(h, "/@?#") || strings.Contains(h, "://") {
		return false
	}
	u, err := url.Parse("https://" + h)
	return err == nil && u.Host == h && u.Hostname() != "" && !strings.HasPrefix(h, ".") && !strings.HasPrefix(h, "-")
}

// readSecret reads a password or token file, without its trailing newline.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("credentials file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("credentials file %s is empty", path)
	}
	return s, nil
}

// readCA reads a PEM file holding at least one certificate.
func readCA(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return nil, fmt.Errorf("CA file %s: %w", path, err)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate (want -----BEGIN CERTIFICATE-----)", path)
	}
	return b, nil
}

// CacheConfig returns the pull-through cache's configuration for the
// registry dir: its store under dir, the upstream, credentials (the Docker
// config.json of this process's user for every other registry), CAs,
// plain-HTTP hosts and cap.
func (s Settings) CacheConfig(dir string) (cache.Config, error) {
	if err := s.Validate(); err != nil {
		return cache.Config{}, err
	}
	cfg := cache.Config{
		Dir:      filepath.Join(dir, cacheDir),
		Keychain: authn.DefaultKeychain,
		Insecure: append([]string(nil), s.Insecure...),
		MaxBytes: s.CacheSize,
	}
	for _, f := range s.CAFiles {
		b, err := readCA(f)
		if err != nil {
			return cache.Config{}, err
		}
		cfg.ExtraCA = append(append(cfg.ExtraCA, b...), '\n')
	}
	if s.Upstream != "" {
		up := cache.Upstream{URL: strings.TrimSuffix(s.Upstream, "/"), Mirror: true}
		switch {
		case s.UpstreamPasswordFile != "":
			p, err := readSecret(s.UpstreamPasswordFile)
			if err != nil {
				return cache.Config{}, err
			}
			up.Auth = &authn.Basic{Username: s.UpstreamUsername, Password: p}
		case s.UpstreamTokenFile != "":
			t, err := readSecret(s.UpstreamTokenFile)
			if err != nil {
				return cache.Config{}, err
			}
			up.Auth = &authn.Bearer{Token: t}
		}
		cfg.Upstreams = map[string]cache.Upstream{"*": up}
	}
	return cfg, nil
}
