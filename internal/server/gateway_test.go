package server

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

func TestGatewayForwardsUntilReleased(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer backend.Close()
	target := strings.TrimPrefix(backend.URL, "http://")

	g := &Gateway{Addr: netip.MustParseAddr("127.0.0.1"), Log: logr.Discard()}
	defer g.Close()
	addr, err := g.Expose("run-1", target, "")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := g.Expose("run-1", target, ""); again != addr {
		t.Errorf("exposing again gave %s, want the same %s", again, addr)
	}
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
		t.Errorf("gateway listens on %s, want the gateway address", addr)
	}
	resp, err := http.Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello /x" {
		t.Errorf("through the gateway: %q", body)
	}

	other, err := g.Expose("run-2", target, "")
	if err != nil || other == addr {
		t.Errorf("a second key got %s (%v), want a port of its own", other, err)
	}
	g.Release("run-1")
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Release", addr)
	}
	if resp, err := http.Get("http://" + other + "/y"); err != nil {
		t.Errorf("releasing one key closed another: %v", err)
	} else {
		resp.Body.Close()
	}

	// A restarted server asks for the port the runner knows.
	back, err := g.Expose("run-1", target, addr)
	if err != nil || back != addr {
		t.Errorf("exposing at the old address %s gave %s (%v)", addr, back, err)
	}
	// A taken port gives another one rather than failing.
	if moved, err := g.Expose("run-3", target, other); err != nil || moved == other {
		t.Errorf("exposing at a taken address gave %s (%v), want a free port", moved, err)
	}
}
