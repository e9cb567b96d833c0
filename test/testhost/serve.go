package testhost

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// HTTPServer is an HTTP server of a test host.
type HTTPServer struct {
	addr    netip.AddrPort
	mu      sync.Mutex
	sources []netip.Addr
}

// ServeHTTP serves handler on port (0 picks one) of every address of the
// test host until the test ends. The listener is made in the test host's
// namespace and served from the test process.
func (h *Host) ServeHTTP(t testing.TB, port int, handler http.Handler) *HTTPServer {
	t.Helper()
	var l net.Listener
	if err := h.Do(func() error {
		var err error
		l, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	}); err != nil {
		t.Fatalf("test host %s: listen on port %d: %v", h.name, port, err)
	}
	s := &HTTPServer{addr: netip.AddrPortFrom(h.addr, uint16(l.Addr().(*net.TCPAddr).Port))}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
				s.mu.Lock()
				s.sources = append(s.sources, ap.Addr().Unmap())
				s.mu.Unlock()
			}
			handler.ServeHTTP(w, r)
		}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return s
}

// Addr is the server's address: the test host's address and the port.
func (s *HTTPServer) Addr() netip.AddrPort { return s.addr }

// URL is "http://ADDR:PORT".
func (s *HTTPServer) URL() string { return "http://" + s.addr.String() }

// Sources returns the source address of every request so far, in order.
func (s *HTTPServer) Sources() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.Addr(nil), s.sources...)
}

// DNSServer is a DNS server (UDP and TCP) that answers from a fixed set of
// records: A (or AAAA) records for their names, no record for other types
// of those names, NXDOMAIN for other names.
type DNSServer struct {
	addr    netip.AddrPort
	records map[string]netip.Addr
	queries atomic.Int64
}

// ServeDNS serves records on port 53 of every address of the test host
// until the test ends. Names are case-insensitive, with or without the
// trailing dot.
func (h *Host) ServeDNS(t testing.TB, records map[string]netip.Addr) *DNSServer {
	t.Helper()
	s := newDNSServer(netip.AddrPortFrom(h.addr, 53), records)
	var pc net.PacketConn
	var l net.Listener
	if err := h.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", ":53"); err != nil {
			return err
		}
		if l, err = net.Listen("tcp4", ":53"); err != nil {
			pc.Close()
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("test host %s: listen on port 53: %v", h.name, err)
	}
	s.serve(t, pc, l)
	return s
}

// ServeLoopbackDNS serves records on port 53 of addr, a loopback address
// of the test process's namespace such as 127.0.0.53, as a host's stub
// resolver does, until the test ends.
func ServeLoopbackDNS(t testing.TB, addr netip.Addr, records map[string]netip.Addr) *DNSServer {
	t.Helper()
	if !addr.IsLoopback() {
		t.Fatalf("ServeLoopbackDNS: %s is not a loopback address", addr)
	}
	s := newDNSServer(netip.AddrPortFrom(addr, 53), records)
	pc, err := net.ListenPacket("udp", s.addr.String())
	if err != nil {
		t.Fatalf("DNS server on %s: %v", s.addr, err)
	}
	l, err := net.Listen("tcp", s.addr.String())
	if err != nil {
		pc.Close()
		t.Fatalf("DNS server on %s: %v", s.addr, err)
	}
	s.serve(t, pc, l)
	return s
}

func newDNSServer(addr netip.AddrPort, records map[string]netip.Addr) *DNSServer {
	s := &DNSServer{addr: addr, records: map[string]netip.Addr{}}
	for name, a := range records {
		s.records[dns.CanonicalName(name)] = a
	}
	return s
}

// serve serves on pc and l until the test ends.
func (s *DNSServer) serve(t testing.TB, pc net.PacketConn, l net.Listener) {
	t.Helper()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: l, Handler: s}} {
		started := make(chan struct{})
		done := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
			t.Cleanup(func() {
				_ = srv.Shutdown()
				if err := <-done; err != nil {
					t.Errorf("DNS server on %s: %v", s.addr, err)
				}
			})
		case err := <-done:
			pc.Close()
			l.Close()
			t.Fatalf("DNS server on %s stopped at once: %v", s.addr, err)
		}
	}
}

// Addr is where the server listens (UDP and TCP).
func (s *DNSServer) Addr() netip.AddrPort { return s.addr }

// Queries is the number of queries the server got.
func (s *DNSServer) Queries() int { return int(s.queries.Load()) }

// ServeDNS answers one query; it makes DNSServer a dns.Handler.
func (s *DNSServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	_ = w.WriteMsg(s.answer(req))
}

func (s *DNSServer) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	a, ok := s.records[dns.CanonicalName(q.Name)]
	if !ok {
		m.Rcode = dns.RcodeNameError
		return m
	}
	rrtype := dns.TypeA
	if !a.Is4() {
		rrtype = dns.TypeAAAA
	}
	if q.Qtype == rrtype || q.Qtype == dns.TypeANY {
		rr, err := dns.NewRR(fmt.Sprintf("%s 60 IN %s %s", q.Name, dns.TypeToString[rrtype], a))
		if err == nil {
			m.Answer = append(m.Answer, rr)
		}
	}
	return m
}
