package cache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/sync/singleflight"
)

// Defaults for a zero Config field.
const (
	DefaultTagTTL         = 30 * time.Second
	DefaultResolveTimeout = 10 * time.Second
	DefaultStallTimeout   = time.Minute
)

// Config is how a Cache stores content and reaches its upstreams.
type Config struct {
	// Dir holds the store: blobs/sha256/<hex> (manifests too) and tags/.
	Dir string
	// Upstreams maps a registry host, as clients name it in the ns query
	// parameter (docker.io, ghcr.io, HOST:PORT), to where it is pulled from.
	// The key "*" stands for every host not listed. A host matching no key
	// is pulled from https://HOST (docker.io from registry-1.docker.io; from
	// http://HOST when HOST is in Insecure).
	Upstreams map[string]Upstream
	// Default is the registry host for requests without ns (a client using
	// the cache by its own address, not as a containerd mirror).
	Default string
	// TagTTL is how long a tag's digest is trusted before it is resolved
	// upstream again (DefaultTagTTL when zero).
	TagTTL time.Duration
	// ResolveTimeout bounds resolving a tag upstream; past it the last known
	// digest is served (DefaultResolveTimeout when zero).
	ResolveTimeout time.Duration
	// StallTimeout abandons a download from upstream that received nothing
	// for that long, so a stalled connection does not hold a digest forever
	// (DefaultStallTimeout when zero).
	StallTimeout time.Duration
	// MaxBytes caps the store; least recently used blobs are evicted beyond
	// it. Zero means no cap.
	MaxBytes int64
	// Keychain gives the credentials for an upstream without Upstream.Auth
	// (authn.DefaultKeychain reads the Docker config.json); nil means
	// anonymous.
	Keychain authn.Keychain
	// ExtraCA is PEM certificates trusted for TLS upstreams besides the
	// system roots.
	ExtraCA []byte
	// Insecure lists the HOST:PORT upstreams that may be reached over plain
	// HTTP; every other upstream must be HTTPS.
	Insecure []string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Upstream is a registry the cache pulls from.
type Upstream struct {
	// URL is https://HOST[:PORT] (or http:// for a host in Config.Insecure).
	URL string
	// Mirror says the upstream is itself a mirror, such as another host's
	// cache: requests to it carry the ns query parameter.
	Mirror bool
	// Auth, when set, authenticates to this upstream instead of the
	// Keychain.
	Auth authn.Authenticator
}

// Stats counts what the cache did since it started.
type Stats struct {
	// Hits are manifests and blobs served from the store without fetching
	// them (a tag resolved upstream to a stored manifest is a hit).
	Hits int64
	// Misses are manifests and blobs fetched upstream.
	Misses int64
	// Stale are tags served from their last known digest because the
	// upstream could not be asked.
	Stale int64
	// UpstreamBytes is the content bytes fetched from upstreams.
	UpstreamBytes int64
	// Evictions is blobs removed to keep under MaxBytes (or by Prune).
	Evictions int64
	// Bytes and Blobs are what the store holds now.
	Bytes int64
	Blobs int
}

// Cache is a pull-through cache of OCI registries; it serves the read side of
// the distribution API (GET and HEAD of /v2/, manifests and blobs).
type Cache struct {
	cfg        Config
	insecure   map[string]bool
	store      *store
	tags       *tags
	transports *transports
	flight     singleflight.Group // tag resolutions
	uploads    *uploads           // pushes (ServePush)

	mu        sync.Mutex
	downloads map[string]*download // by hex digest

	hits, misses, stale, upBytes, evictions atomic.Int64
}

var _ http.Handler = (*Cache)(nil)

// New opens the store under cfg.Dir (creating it, and removing what an
// interrupted download left there) and returns the cache.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("cache: no store directory")
	}
	if cfg.TagTTL == 0 {
		cfg.TagTTL = DefaultTagTTL
	}
	if cfg.ResolveTimeout == 0 {
		cfg.ResolveTimeout = DefaultResolveTimeout
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Keychain == nil {
		cfg.Keychain = authn.NewMultiKeychain()
	}
	if cfg.Default != "" && !validHost(cfg.Default) {
		return nil, fmt.Errorf("cache: default upstream %q is not a registry host", cfg.Default)
	}
	insecure := map[string]bool{}
	for _, h := range cfg.Insecure {
		// HOST and HOST:80 are one plain-HTTP address.
		insecure[h] = true
		if host, ok := strings.CutSuffix(h, ":80"); ok {
			insecure[host] = true
		} else if _, _, err := net.SplitHostPort(h); err != nil {
			insecure[h+":80"] = true
		}
	}
	for ns, u := range cfg.Upstreams {
		base, err := parseUpstreamURL(u.URL)
		if err != nil {
			return nil, fmt.Errorf("cache: upstream for %s: %w", ns, err)
		}
		if base.Scheme == "http" && !insecure[base.Host] {
			return nil, fmt.Errorf("cache: upstream for %s: %s is plain HTTP: %w", ns, u.URL, ErrInsecure)
		}
	}
	base, err := baseTransport(cfg.ExtraCA, insecure)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	st, err := openStore(cfg.Dir, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("cache: open store: %w", err)
	}
	tg, err := openTags(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("cache: open tags: %w", err)
	}
	c := &Cache{
		cfg:        cfg,
		insecure:   insecure,
		store:      st,
		tags:       tg,
		downloads:  map[string]*download{},
		uploads:    newUploads(),
		transports: &transports{base: base, keychain: cfg.Keychain, insecure: insecure, m: map[string]http.RoundTripper{}},
	}
	if cfg.MaxBytes > 0 {
		if err := c.Prune(context.Background(), cfg.MaxBytes); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	return c, nil
}

// Stats returns the counters and the store's size.
func (c *Cache) Stats() Stats {
	b, n := c.store.size()
	return Stats{
		Hits:          c.hits.Load(),
		Misses:        c.misses.Load(),
		Stale:         c.stale.Load(),
		UpstreamBytes: c.upBytes.Load(),
		Evictions:     c.evictions.Load(),
		Bytes:         b,
		Blobs:         n,
	}
}

// Prune evicts least recently used blobs until the store holds at most limit
// bytes (0 empties it), leaving blobs being served or written.
func (c *Cache) Prune(ctx context.Context, limit int64) error {
	n, _, err := c.store.evict(limit, "")
	c.evictions.Add(int64(n))
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	return ctx.Err()
}

// enforceCap evicts beyond MaxBytes after a blob was stored, keeping it.
func (c *Cache) enforceCap(keep string) {
	if c.cfg.MaxBytes <= 0 {
		return
	}
	n, _, _ := c.store.evict(c.cfg.MaxBytes, keep)
	c.evictions.Add(int64(n))
}
