package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ephemera-dev/ephemera/internal/registry/cache"
)

// Status is what GET /_ephemera/status answers.
type Status struct {
	// Addr is the daemon's loopback listener.
	Addr string `json:"addr"`
	// PID is the daemon's process id.
	PID int `json:"pid"`
	// Dir is the registry dir.
	Dir string `json:"dir"`
	// Started is when the daemon started.
	Started time.Time `json:"started"`
	// Settings are those the daemon started with.
	Settings Settings `json:"settings"`
	// Mirrors are the registries clusters pull through the cache.
	Mirrors []string `json:"mirrors"`
	// Stats are the pull-through cache's.
	Stats CacheStats `json:"stats"`
	// Local is the local registry's content.
	Local LocalStatus `json:"local"`
}

// CacheStats are the pull-through cache's counters (cache.Stats) and cap.
type CacheStats struct {
	Hits          int64 `json:"hits"`
	Misses        int64 `json:"misses"`
	Stale         int64 `json:"stale"`
	UpstreamBytes int64 `json:"upstreamBytes"`
	Evictions     int64 `json:"evictions"`
	Bytes         int64 `json:"bytes"`
	Blobs         int   `json:"blobs"`
	// MaxBytes is the cap; 0 means none.
	MaxBytes int64 `json:"maxBytes"`
}

// HitRatio is hits over hits and misses (0 before any request).
func (s CacheStats) HitRatio() float64 {
	if s.Hits+s.Misses == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

func cacheStats(s cache.Stats, limit int64) CacheStats {
	return CacheStats{Hits: s.Hits, Misses: s.Misses, Stale: s.Stale, UpstreamBytes: s.UpstreamBytes,
		Evictions: s.Evictions, Bytes: s.Bytes, Blobs: s.Blobs, MaxBytes: limit}
}

// LocalStatus is the local registry's content.
type LocalStatus struct {
	// Images are its repo:tag names.
	Images []string `json:"images"`
	// Bytes is the size of its store.
	Bytes int64 `json:"bytes"`
}

// FetchStatus asks a running daemon for its status.
func FetchStatus(ctx context.Context, d Daemon) (Status, error) {
	return callStatus(ctx, http.MethodGet, d.URL()+StatusPath, "")
}

// RequestPrune asks a running daemon to prune its cache to at most limit
// bytes (0 empties it) and returns its status afterwards.
func RequestPrune(ctx context.Context, d Daemon, limit int64) (Status, error) {
	return callStatus(ctx, http.MethodPost, d.URL()+PrunePath+"?size="+strconv.FormatInt(limit, 10), readToken(d.Dir))
}

func callStatus(ctx context.Context, method, url, token string) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return st, err
	}
	if token != "" {
		req.Header.Set(TokenHeader, token)
	}
	resp, err := daemonClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("registry daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("registry daemon: %s %s: %s", method, req.URL.Path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("registry daemon: %s: %w", req.URL.Path, err)
	}
	return st, nil
}

// Collector returns a Prometheus collector of dir's daemon for serve's
// /metrics: each scrape reads /_ephemera/status; ephemera_registry_up is 0
// when no daemon runs (and no other metric is reported then).
func Collector(dir string) prometheus.Collector {
	return &collector{dir: dir}
}

type collector struct{ dir string }

var (
	descUp        = prometheus.NewDesc("ephemera_registry_up", "Whether the host's registry daemon runs and answers (1) or not (0).", nil, nil)
	descHits      = prometheus.NewDesc("ephemera_registry_cache_hits_total", "Manifests and blobs the pull-through cache served from its store.", nil, nil)
	descMisses    = prometheus.NewDesc("ephemera_registry_cache_misses_total", "Manifests and blobs the pull-through cache fetched upstream.", nil, nil)
	descStale     = prometheus.NewDesc("ephemera_registry_cache_stale_total", "Tags served from their last known digest because the upstream could not be asked.", nil, nil)
	descUpBytes   = prometheus.NewDesc("ephemera_registry_cache_upstream_bytes_total", "Bytes the pull-through cache fetched from upstreams.", nil, nil)
	descEvictions = prometheus.NewDesc("ephemera_registry_cache_evictions_total", "Blobs evicted from the pull-through cache.", nil, nil)
	descBytes     = prometheus.NewDesc("ephemera_registry_cache_bytes", "Bytes the pull-through cache's store holds.", nil, nil)
	descMaxBytes  = prometheus.NewDesc("ephemera_registry_cache_max_bytes", "The pull-through cache's cap in bytes (0: none).", nil, nil)
	descBlobs     = prometheus.NewDesc("ephemera_registry_cache_blobs", "Blobs and manifests the pull-through cache's store holds.", nil, nil)
	descLocal     = prometheus.NewDesc("ephemera_registry_local_images", "Tagged images in the local registry.", nil, nil)
	descLocalB    = prometheus.NewDesc("ephemera_registry_local_bytes", "Bytes the local registry's store holds.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descHits, descMisses, descStale, descUpBytes, descEvictions, descBytes, descMaxBytes, descBlobs, descLocal, descLocalB} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.status()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	s := st.Stats
	for _, m := range []struct {
		d *prometheus.Desc
		t prometheus.ValueType
		v float64
	}{
		{descHits, prometheus.CounterValue, float64(s.Hits)},
		{descMisses, prometheus.CounterValue, float64(s.Misses)},
		{descStale, prometheus.CounterValue, float64(s.Stale)},
		{descUpBytes, prometheus.CounterValue, float64(s.UpstreamBytes)},
		{descEvictions, prometheus.CounterValue, float64(s.Evictions)},
		{descBytes, prometheus.GaugeValue, float64(s.Bytes)},
		{descMaxBytes, prometheus.GaugeValue, float64(s.MaxBytes)},
		{descBlobs, prometheus.GaugeValue, float64(s.Blobs)},
		{descLocal, prometheus.GaugeValue, float64(len(st.Local.Images))},
		{descLocalB, prometheus.GaugeValue, float64(st.Local.Bytes)},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v)
	}
}

func (c *collector) status() (Status, error) {
	d, ok, err := Running(c.dir)
	if err != nil {
		return Status{}, err
	}
	if !ok {
		return Status{}, fmt.Errorf("not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return FetchStatus(ctx, d)
}
