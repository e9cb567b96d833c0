package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/internal/flock"
)

func TestHostsFiles(t *testing.T) {
	link := netip.MustParseAddrPort("10.250.0.1:5001")
	reg := &nodeRegistry{Local: "localhost:5001", Mirrors: []string{"docker.io", "ghcr.io", "10.9.0.2:5000"}}
	hostsFile := func(server, host string) string {
		return "server = \"" + server + "\"\n\n[host.\"" + host + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	}
	cacheFor := func(server string) string { return hostsFile(server, "http://10.250.0.1:5001") }
	direct := func(server string) string { return hostsFile(server, server) }
	tests := []struct {
		name     string
		reg      *nodeRegistry
		insecure []string
		want     map[string]string
	}{
		{
			name: "every mirrored registry through the cache, falling back to itself; the local registry is the cache",
			reg:  reg,
			want: map[string]string{
				"docker.io":      cacheFor("https://registry-1.docker.io"),
				"ghcr.io":        cacheFor("https://ghcr.io"),
				"10.9.0.2:5000":  cacheFor("https://10.9.0.2:5000"),
				"localhost:5001": direct("http://10.250.0.1:5001"),
			},
		},
		{
			name:     "an insecure mirrored registry: plain HTTP to it, and the cache told so by the path",
			reg:      reg,
			insecure: []string{"10.9.0.2:5000"},
			want: map[string]string{
				"docker.io":      cacheFor("https://registry-1.docker.io"),
				"ghcr.io":        cacheFor("https://ghcr.io"),
				"10.9.0.2:5000":  strings.Replace(cacheFor("http://10.9.0.2:5000"), "5001\"]", "5001/insecure\"]", 1),
				"localhost:5001": direct("http://10.250.0.1:5001"),
			},
		},
		{
			name:     "an insecure registry the cache does not mirror is pulled over plain HTTP directly",
			reg:      reg,
			insecure: []string{"10.9.0.3:80"},
			want: map[string]string{
				"docker.io":      cacheFor("https://registry-1.docker.io"),
				"ghcr.io":        cacheFor("https://ghcr.io"),
				"10.9.0.2:5000":  cacheFor("https://10.9.0.2:5000"),
				"localhost:5001": direct("http://10.250.0.1:5001"),
				"10.9.0.3:80":    direct("http://10.9.0.3:80"),
			},
		},
		{
			name:     "no cache: insecure registries only",
			insecure: []string{"10.9.0.3:80"},
			want:     map[string]string{"10.9.0.3:80": direct("http://10.9.0.3:80")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := hostsFiles(tt.reg, link, tt.insecure)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("hostsFiles (-want +got):\n%s", d)
			}
		})
	}
}

func TestCheckRegistryHostPort(t *testing.T) {
	for _, ok := range []string{"10.0.0.5:5000", "registry.test:80", "[fd00::1]:5000"} {
		if err := checkRegistryHostPort(ok); err != nil {
			t.Errorf("checkRegistryHostPort(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.5", "http://10.0.0.5:5000", "10.0.0.5:5000/v2", ":5000", "reg.test:0", "reg.test:http"} {
		if err := checkRegistryHostPort(bad); err == nil {
			t.Errorf("checkRegistryHostPort(%q) = nil, want an error", bad)
		}
	}
}

func TestPlanRegistryWhenTheCacheCannotStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "registry")
	// A daemon that exits at once: the plan still names the mirrors, so
	// containerd falls back to the registries, and says what went wrong.
	reg, err := planRegistry(t.Context(), dir, "/bin/false", nil)
	if err == nil {
		t.Fatal("planRegistry with a daemon that cannot start: no error")
	}
	if reg == nil || reg.Local != "localhost:5001" || len(reg.Mirrors) == 0 || !filepath.IsAbs(reg.Dir) {
		t.Errorf("plan = %+v, want the default mirrors and local name in an absolute dir", reg)
	}
	// Settings that cannot be read: no plan, an error to warn with.
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if reg, err := planRegistry(t.Context(), dir, "/bin/false", nil); err == nil || reg != nil {
		t.Errorf("planRegistry with broken settings = %+v, %v; want no plan and an error", reg, err)
	}
}

// serveRegistryLink: with no cache a connection is closed at once (so
// containerd falls back to the registry); with one, it reaches the cache's
// clusters' side; when the cache comes back elsewhere, it is found there.
func TestServeRegistryLink(t *testing.T) {
	regDir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serveRegistryLink(ctx, l, regDir, (&net.Dialer{}).DialContext) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveRegistryLink: %v", err)
		}
	}()
	// ask sends a line through the link and returns the answer.
	ask := func() (string, error) {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return "", err
		}
		b, err := io.ReadAll(c)
		return string(b), err
	}
	// Closed at once: an end or a reset (it did not read the request),
	// either way containerd tries the next host.
	if got, err := ask(); got != "" || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("with no cache: got %q, %v; want the connection closed at once", got, err)
	}

	// A cache: an echo server as its clusters' side, another address as
	// its host side (never dialled).
	echo := func(answer string) net.Listener {
		el, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := el.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(answer))
				c.Close()
			}
		}()
		return el
	}
	lock, err := flock.TryLock(filepath.Join(regDir, "daemon.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	announce := func(cluster net.Listener) {
		b := fmt.Sprintf(`{"pid":%d,"addr":"127.0.0.1:1","clusterAddr":%q}`, os.Getpid(), cluster.Addr().String())
		if err := os.WriteFile(filepath.Join(regDir, "daemon.json"), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	first := echo("first")
	announce(first)
	time.Sleep(cacheAddrTTL) // the "no cache" answer is remembered that long at most
	if got, err := ask(); got != "first" {
		t.Errorf("with a cache: got %q, %v; want its clusters' side", got, err)
	}
	// The cache restarts elsewhere: the first dial fails, the next finds it.
	first.Close()
	second := echo("second")
	defer second.Close()
	announce(second)
	var got string
	for range 3 {
		if got, _ = ask(); got == "second" {
			break
		}
	}
	if got != "second" {
		t.Errorf("after the cache moved: got %q, want the new address", got)
	}
}
