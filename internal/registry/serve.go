package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/registry/cache"
)

// ShutdownTimeout is how long Serve waits for requests in flight after ctx
// ends before it closes their connections.
const ShutdownTimeout = 10 * time.Second

// localRegistry is the local registry's handler.
type localRegistry interface {
	http.Handler
	// Images lists repo:tag.
	Images() []string
	// Bytes is the store's size.
	Bytes() int64
}

// Serve is the daemon: it holds R/daemon.lock for its whole life, opens the
// cache (R/cache) and the local registry (R/local) with dir's settings,
// listens on listen (empty: 127.0.0.1:DefaultPort, or the next free port
// up to DefaultPort+PortRange-1), writes R/daemon.json and serves Router
// until ctx ends; then it stops accepting, waits up to ShutdownTimeout for
// requests in flight and removes R/daemon.json. Messages go to stderr.
func Serve(ctx context.Context, dir, listen string) error {
	logger := log.New(os.Stderr, "", log.LstdFlags)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("registry dir: %w", err)
	}
	lock, err := flock.TryLock(filepath.Join(dir, daemonLock))
	if errors.Is(err, flock.ErrLocked) {
		if d, ok, _ := Running(dir); ok {
			return fmt.Errorf("a registry daemon already runs for %s (pid %d, %s); stop it with 'ephemera registry stop'", dir, d.PID, d.Addr)
		}
		return fmt.Errorf("a registry daemon is starting for %s", dir)
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	jsonPath := filepath.Join(dir, daemonFile)
	// A file left by a killed daemon.
	_ = os.Remove(jsonPath)

	settings, err := LoadSettings(dir)
	if err != nil {
		return err
	}
	cfg, err := settings.CacheConfig(dir)
	if err != nil {
		return fmt.Errorf("registry settings (fix them with 'ephemera registry configure'): %w", err)
	}
	c, err := cache.New(cfg)
	if err != nil {
		return err
	}
	local, err := newLocal(filepath.Join(dir, localDir))
	if err != nil {
		return err
	}
	ln, err := listenDaemon(dir, listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	// The clusters' side, read-only (see Router.ForClusters).
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for clusters: %w", err)
	}
	defer cln.Close()
	d := Daemon{Dir: dir, PID: os.Getpid(), Started: time.Now().UTC().Truncate(time.Second)}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil {
		d.Addr = ap
	}
	if ap, err := netip.ParseAddrPort(cln.Addr().String()); err == nil {
		d.ClusterAddr = ap
	}
	mirrors := settings.MirroredHosts()
	token, err := writeToken(dir)
	if err != nil {
		return fmt.Errorf("registry dir: write the daemon's token: %w", err)
	}
	defer os.Remove(filepath.Join(dir, tokenFile))
	rt := &Router{
		Token:           token,
		Mirrors:         mirrors,
		InsecureAllowed: insecureAllowed(dir, settings.Insecure),
		Cache:           c,
		Local:           local,
		Push:            servePush(c),
		AllowPlainHTTP:  allowPlainHTTP,
		LocalPort:       d.Addr.Port(),
		Status: func() Status {
			return Status{
				Addr: d.Addr.String(), PID: d.PID, Dir: dir, Started: d.Started,
				Settings: settings, Mirrors: mirrors,
				Stats: cacheStats(c.Stats(), settings.CacheSize),
				Local: LocalStatus{Images: nonNil(local.Images()), Bytes: local.Bytes()},
			}
		},
	}
	clusters := *rt
	clusters.ForClusters = true
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          logger,
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		}
	}
	srv, csrv := newServer(rt), newServer(&clusters)
	b, _ := json.Marshal(d)
	if err := writeFileAtomic(jsonPath, append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", jsonPath, err)
	}
	defer os.Remove(jsonPath)
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ln) }()
	go func() { served <- csrv.Serve(cln) }()
	logger.Printf("Serving the registry of %s on %s (pid %d; cache cap %s; upstream %s; mirrors %v)",
		dir, d.Addr, d.PID, sizeOrNone(settings.CacheSize), orDirect(settings.Upstream), mirrors)
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Printf("Stopping")
	// Nobody is told to come here any more.
	_ = os.Remove(jsonPath)
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	for _, s := range []*http.Server{srv, csrv} {
		if err := s.Shutdown(sctx); err != nil {
			logger.Printf("Closing connections still busy after %s", ShutdownTimeout)
			_ = s.Close()
		}
	}
	logger.Printf("Stopped")
	return nil
}

// listenDaemon listens on listen or, without it, on the loopback port the
// daemon of dir had last (clusters and scripts know the local registry as
// localhost:PORT), else the first free one from DefaultPort, and records it.
func listenDaemon(dir, listen string) (net.Listener, error) {
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return ln, nil
	}
	path := filepath.Join(dir, portFile)
	if b, err := os.ReadFile(path); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 && p < 65536 {
			if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
				return ln, nil
			}
		}
	}
	ln, err := listenFree("127.0.0.1", DefaultPort, PortRange)
	if err != nil {
		return nil, err
	}
	_ = writeFileAtomic(path, []byte(strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)+"\n"))
	return ln, nil
}

// listenFree listens on host:first or, when taken, the next free port of
// the n from first.
func listenFree(host string, first, n int) (net.Listener, error) {
	for p := first; p < first+n && p < 65536; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(p)))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	return nil, fmt.Errorf("listen: every port of %s:%d-%d is taken; free one, or pass --listen ADDR", host, first, first+n-1)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func sizeOrNone(n int64) string {
	if n == 0 {
		return "none"
	}
	return FormatBytes(n)
}

func orDirect(upstream string) string {
	if upstream == "" {
		return "none (each registry directly)"
	}
	return upstream
}

// FormatBytes writes a byte count for people: 512 B, 1.5 KiB, 20.0 GiB.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
