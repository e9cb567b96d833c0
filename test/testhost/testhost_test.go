package testhost

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
)

// client is an HTTP client that goes straight to the address, whatever
// proxy the environment names, and keeps no connection open.
var client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %q %v", url, resp.Status, b, err)
	}
	return string(b)
}

func TestHTTPFromHost(t *testing.T) {
	h := New(t, "web")
	if !DefaultRange.Contains(h.Addr()) || !DefaultRange.Contains(h.HostSideAddr()) || h.Addr() != h.HostSideAddr().Next() {
		t.Errorf("addresses %s (test host), %s (host side): want two neighbours in %s", h.Addr(), h.HostSideAddr(), DefaultRange)
	}
	if !strings.HasPrefix(h.Link(), LinkPrefix) || strings.HasPrefix(h.Link(), "eph-") || len(h.Link()) > 15 {
		t.Errorf("link name %q", h.Link())
	}
	srv := h.ServeHTTP(t, 8080, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the test host")
	}))
	if want := "http://" + h.Addr().String() + ":8080"; srv.URL() != want {
		t.Errorf("URL %s, want %s", srv.URL(), want)
	}
	for range 2 {
		if got := get(t, srv.URL()); got != "hello from the test host" {
			t.Errorf("body %q", got)
		}
	}
	if diff := cmp.Diff([]netip.Addr{h.HostSideAddr(), h.HostSideAddr()}, srv.Sources(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("request sources (-want +got):\n%s", diff)
	}

	// The listener lives in the test host: its own loopback, where
	// nothing else listens, answers on the port too.
	if err := h.Do(func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:8080", time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Errorf("the test host's loopback port 8080: %v", err)
	}

	// Port 0 picks a port; a second test host gets another /30.
	h2 := New(t, "web2")
	if h2.Addr() == h.Addr() || netip.PrefixFrom(h.Addr(), 30).Masked().Overlaps(netip.PrefixFrom(h2.Addr(), 30)) {
		t.Errorf("two test hosts share a network: %s and %s", h.Addr(), h2.Addr())
	}
	srv2 := h2.ServeHTTP(t, 0, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "two") }))
	if srv2.Addr().Port() == 0 || get(t, srv2.URL()) != "two" {
		t.Errorf("second test host at %s", srv2.URL())
	}
	if got := srv2.Sources(); len(got) != 1 || got[0] != h2.HostSideAddr() {
		t.Errorf("second test host's sources %v, want [%s]", got, h2.HostSideAddr())
	}
}

func TestDoDialsFromTestHost(t *testing.T) {
	h := New(t, "dial")
	// A listener of the host, on its end of the link.
	l, err := net.Listen("tcp", netip.AddrPortFrom(h.HostSideAddr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	from := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			from <- err.Error()
			return
		}
		from <- c.RemoteAddr().String()
		c.Close()
	}()
	if err := h.Do(func() error {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("dial the host from the test host: %v", err)
	}
	if got := <-from; !strings.HasPrefix(got, h.Addr().String()+":") {
		t.Errorf("the host saw a connection from %s, want the test host's %s", got, h.Addr())
	}
}

func ask(t *testing.T, network string, server netip.AddrPort, name string, qtype uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(q, server.String())
	if err != nil {
		t.Fatalf("ask %s %s for %s: %v", network, server, name, err)
	}
	return resp
}

func checkDNS(t *testing.T, s *DNSServer) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		before := s.Queries()
		resp := ask(t, network, s.Addr(), "WEB.test.", dns.TypeA)
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "10.254.200.2" {
			t.Errorf("%s: web.test A: %v", network, resp.Answer)
		}
		resp = ask(t, network, s.Addr(), "web.test.", dns.TypeAAAA)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
			t.Errorf("%s: web.test AAAA: %s %v, want NOERROR without records", network, dns.RcodeToString[resp.Rcode], resp.Answer)
		}
		resp = ask(t, network, s.Addr(), "v6.test.", dns.TypeAAAA)
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.AAAA).AAAA.String() != "fd00::2" {
			t.Errorf("%s: v6.test AAAA: %v", network, resp.Answer)
		}
		resp = ask(t, network, s.Addr(), "other.test.", dns.TypeA)
		if resp.Rcode != dns.RcodeNameError {
			t.Errorf("%s: other.test: %s, want NXDOMAIN", network, dns.RcodeToString[resp.Rcode])
		}
		if got := s.Queries() - before; got != 4 {
			t.Errorf("%s: the server counted %d queries, want 4", network, got)
		}
	}
}

var records = map[string]netip.Addr{
	"web.test": netip.MustParseAddr("10.254.200.2"),
	"V6.test.": netip.MustParseAddr("fd00::2"),
}

func TestServeDNS(t *testing.T) {
	h := New(t, "dns")
	s := h.ServeDNS(t, records)
	if s.Addr() != netip.AddrPortFrom(h.Addr(), 53) {
		t.Errorf("Addr %s", s.Addr())
	}
	checkDNS(t, s)
}

func TestServeLoopbackDNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("port 53 needs root")
	}
	s := ServeLoopbackDNS(t, netip.MustParseAddr("127.0.0.153"), records)
	checkDNS(t, s)
}

// fakeTB is a testing.TB whose Fatalf ends the goroutine without failing
// the test, and whose cleanups run when run returns.
type fakeTB struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Cleanup(fn func())         { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(s string, a ...any) { f.errors = append(f.errors, fmt.Sprintf(s, a...)) }
func (f *fakeTB) Fatalf(s string, a ...any) {
	f.Errorf(s, a...)
	runtime.Goexit()
}

func (f *fakeTB) run(fn func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	for _, c := range slices.Backward(f.cleanups) {
		c()
	}
}

// leftovers is what test hosts could leave in the test process and on the
// host: references to network namespaces (open fds, threads), sockets
// (which hold their namespace), links named like a test host's, named
// namespaces.
func leftovers(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, glob := range []string{"/proc/self/fd/*", "/proc/self/task/*/ns/net"} {
		paths, _ := filepath.Glob(glob)
		for _, p := range paths {
			target, err := os.Readlink(p)
			switch {
			case err != nil:
			case strings.HasPrefix(target, "net:"):
				out["namespace "+target] = true
			case strings.HasPrefix(target, "socket:"):
				out["open "+target] = true
			}
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, LinkPrefix) {
			out["link "+l.Attrs().Name] = true
		}
	}
	named, _ := os.ReadDir("/run/netns")
	for _, n := range named {
		out["named namespace "+n.Name()] = true
	}
	return out
}

// newLeftovers returns the leftovers that were not there before, waiting
// up to wait for them to go.
func newLeftovers(t *testing.T, before map[string]bool, wait time.Duration) []string {
	t.Helper()
	var out []string
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		out = out[:0]
		for item := range leftovers(t) {
			if !before[item] {
				out = append(out, item)
			}
		}
		if len(out) == 0 || time.Now().After(deadline) {
			return out
		}
	}
}

func TestCleanup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a test host needs root")
	}
	before := leftovers(t)
	var ns, link string
	t.Run("servers", func(t *testing.T) {
		h := New(t, "cleanup")
		link = h.Link()
		ns, _ = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", int(h.ns)))
		srv := h.ServeHTTP(t, 80, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		get(t, srv.URL())
		d := h.ServeDNS(t, records)
		ask(t, "tcp", d.Addr(), "web.test.", dns.TypeA)
		reg := h.ServeRegistry(t, RegistryOptions{TLS: true, Throttle: 1 << 20})
		PushImage(t, reg, "cleanup/app:v1", empty.Image, 1024)
		reg.Stop()
		reg.Start()
		if _, err := PullImage(reg.Host()+"/cleanup/app:v1", reg.RemoteOptions()...); err != nil {
			t.Fatal(err)
		}
		if left := newLeftovers(t, before, 0); !slices.Contains(left, "link "+link) || !slices.Contains(left, "namespace "+ns) {
			t.Fatalf("while the test host lives, leftovers() = %v, want its link %s and namespace %s", left, link, ns)
		}
	})
	if left := newLeftovers(t, before, time.Second); len(left) > 0 {
		t.Errorf("left after the test host's test ended (link %s, %s):\n  %s", link, ns, strings.Join(left, "\n  "))
	}

	// A create that fails half-way (no free /30: the first test host's
	// is the whole range) removes what it made.
	h := New(t, "full")
	before = leftovers(t)
	f := &fakeTB{TB: t}
	f.run(func(tb testing.TB) { NewIn(tb, "nospace", netip.PrefixFrom(h.Addr(), 30).Masked()) })
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "no free /30") {
		t.Errorf("failed create: errors %q, want one saying there is no free /30", f.errors)
	}
	if left := newLeftovers(t, before, time.Second); len(left) > 0 {
		t.Errorf("left after a failed create:\n  %s", strings.Join(left, "\n  "))
	}
}

func TestFirstFree(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name  string
		r     string
		used  []netip.Prefix
		want  string
		isErr bool
	}{
		{name: "empty host", r: "10.254.0.0/16", want: "10.254.0.0/30"},
		{name: "first taken", r: "10.254.0.0/16", used: []netip.Prefix{p("10.254.0.1/30")}, want: "10.254.0.4/30"},
		{name: "a larger network covers the start", r: "10.254.0.0/16", used: []netip.Prefix{p("10.254.0.0/24"), p("10.254.1.4/30")}, want: "10.254.1.0/30"},
		{name: "a /32 in the second", r: "10.254.0.0/16", used: []netip.Prefix{p("10.254.0.0/30"), p("10.254.0.5/32")}, want: "10.254.0.8/30"},
		{name: "others elsewhere", r: "10.254.0.0/16", used: []netip.Prefix{p("10.0.0.0/8")}, isErr: true},
		{name: "a /30 range", r: "10.254.9.0/30", want: "10.254.9.0/30"},
		{name: "a full /30 range", r: "10.254.9.0/30", used: []netip.Prefix{p("10.254.9.2/30")}, isErr: true},
		{name: "unrelated", r: "10.254.0.0/16", used: []netip.Prefix{p("192.168.0.0/16"), p("10.250.0.0/16")}, want: "10.254.0.0/30"},
	}
	for _, tt := range tests {
		got, err := firstFree(p(tt.r), tt.used)
		if tt.isErr {
			if err == nil {
				t.Errorf("%s: firstFree = %s, want an error", tt.name, got)
			}
			continue
		}
		if err != nil || got != p(tt.want) {
			t.Errorf("%s: firstFree = %s, %v; want %s", tt.name, got, err, tt.want)
		}
	}
}
