package hostdns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

// upstream is a DNS server on loopback, UDP and TCP on one address.
type upstream struct {
	addr    netip.AddrPort
	queries atomic.Int32
	tcp     atomic.Int32
}

// records answers A queries from a map and NXDOMAIN for other names.
func records(m map[string]string) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(r)
		q := r.Question[0]
		a, ok := m[strings.ToLower(q.Name)]
		switch {
		case !ok:
			resp.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(q.Name + " 60 IN A " + a)
			resp.Answer = append(resp.Answer, rr)
		}
		_ = w.WriteMsg(resp)
	}
}

// startUpstream serves h on a fresh loopback address 127.0.0.x, on port 53
// (as a host's stub resolver listens) or else a free port.
func startUpstream(t *testing.T, port53 bool, h dns.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	counted := func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
			u.tcp.Add(1)
		}
		h(w, r)
	}
	port := 0
	if port53 {
		port = 53
	}
	var pc net.PacketConn
	var l net.Listener
	for try := 0; ; try++ {
		ip := fmt.Sprintf("127.0.0.%d", 100+rand.IntN(150))
		var err error
		if pc, err = net.ListenPacket("udp", fmt.Sprintf("%s:%d", ip, port)); err == nil {
			p := pc.LocalAddr().(*net.UDPAddr).Port
			if l, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ip, p)); err == nil {
				u.addr = netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(p))
				break
			}
			pc.Close()
		}
		if try == 20 {
			t.Fatalf("listen on a loopback address: %v", err)
		}
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: dns.HandlerFunc(counted)}, {Listener: l, Handler: dns.HandlerFunc(counted)}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return u
}

// serving is a running Serve on loopback.
type serving struct {
	udp, tcp string
	stop     func() error
}

func startServe(t *testing.T, cfg Config) serving {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, pc, l, cfg) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(5 * time.Second):
				serveErr = errors.New("Serve did not return within 5s of its context's end")
			}
		})
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	return serving{udp: pc.LocalAddr().String(), tcp: l.Addr().String(), stop: stop}
}

func ask(t *testing.T, network, addr, name string, qtype uint16, edit ...func(*dns.Msg)) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	for _, e := range edit {
		e(q)
	}
	c := &dns.Client{Net: network, Timeout: 8 * time.Second}
	resp, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("ask %s %s for %s: %v", network, addr, name, err)
	}
	if resp.Id != q.Id {
		t.Fatalf("reply ID %d, want the query's %d", resp.Id, q.Id)
	}
	return resp
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func TestServeForwardsToLoopbackResolver(t *testing.T) {
	up := startUpstream(t, true, records(map[string]string{"web.test.": "10.254.7.2"}))
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+up.addr.Addr().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	upstreams, err := ResolvConfNameservers(conf)
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	dialer := new(net.Dialer)
	fwd := startServe(t, Config{
		Upstreams: upstreams,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			dials.Add(1)
			if address != up.addr.String() {
				t.Errorf("dialed %s %s, want the upstream %s", network, address, up.addr)
			}
			return dialer.DialContext(ctx, network, address)
		},
		Local: Wildcard("pr-1.ci.example", netip.MustParseAddr("10.251.0.1")),
	})

	for _, network := range []string{"udp", "tcp"} {
		addr := fwd.udp
		if network == "tcp" {
			addr = fwd.tcp
		}
		t.Run(network, func(t *testing.T) {
			before := up.queries.Load()
			for _, name := range []string{"web.test.", "WEB.Test."} {
				resp := ask(t, network, addr, name, dns.TypeA)
				if got := answers(resp); resp.Rcode != dns.RcodeSuccess || len(got) != 1 || got[0] != "10.254.7.2" {
					t.Errorf("%s: %s %v, want NOERROR 10.254.7.2", name, dns.RcodeToString[resp.Rcode], got)
				}
			}
			if resp := ask(t, network, addr, "missing.test.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
				t.Errorf("missing.test.: %s, want the upstream's NXDOMAIN", dns.RcodeToString[resp.Rcode])
			}
			if got := up.queries.Load() - before; got != 3 {
				t.Errorf("upstream got %d queries, want 3", got)
			}

			before = up.queries.Load()
			for _, name := range []string{"gitlab.pr-1.ci.example.", "GitLab.PR-1.CI.Example.", "pr-1.ci.example."} {
				resp := ask(t, network, addr, name, dns.TypeA)
				if got := answers(resp); resp.Rcode != dns.RcodeSuccess || len(got) != 1 || got[0] != "10.251.0.1" || resp.Answer[0].Header().Ttl != 5 {
					t.Errorf("%s: %s %v, want NOERROR 10.251.0.1 with TTL 5", name, dns.RcodeToString[resp.Rcode], resp.Answer)
				}
			}
			if resp := ask(t, network, addr, "gitlab.pr-1.ci.example.", dns.TypeAAAA); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
				t.Errorf("AAAA of a local name: %s %v, want NOERROR without records", dns.RcodeToString[resp.Rcode], resp.Answer)
			}
			if got := up.queries.Load() - before; got != 0 {
				t.Errorf("local names: the upstream got %d queries, want none", got)
			}
		})
	}
	if dials.Load() == 0 {
		t.Error("Config.Dial was not used")
	}
	if err := fwd.stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestServeNextUpstream(t *testing.T) {
	good := startUpstream(t, false, records(map[string]string{"web.test.": "10.254.7.2"}))
	servfail := startUpstream(t, false, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		_ = w.WriteMsg(m)
	})
	// A socket that takes queries and never answers.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silentAddr := netip.MustParseAddrPort(silent.LocalAddr().String())
	// A port nobody listens on: refused at once.
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := netip.MustParseAddrPort(closed.LocalAddr().String())
	closed.Close()

	t.Run("refused, then server failure, then an answer", func(t *testing.T) {
		fwd := startServe(t, Config{Upstreams: []netip.AddrPort{closedAddr, servfail.addr, good.addr}})
		resp := ask(t, "udp", fwd.udp, "web.test.", dns.TypeA)
		if got := answers(resp); len(got) != 1 || got[0] != "10.254.7.2" {
			t.Errorf("answer %v, want the third upstream's 10.254.7.2", got)
		}
		if servfail.queries.Load() == 0 {
			t.Error("the SERVFAIL upstream was not asked")
		}
	})
	t.Run("silent upstream times out after 2s", func(t *testing.T) {
		before := good.queries.Load()
		fwd := startServe(t, Config{Upstreams: []netip.AddrPort{silentAddr, good.addr}})
		start := time.Now()
		resp := ask(t, "tcp", fwd.tcp, "web.test.", dns.TypeA)
		took := time.Since(start)
		if got := answers(resp); len(got) != 1 || got[0] != "10.254.7.2" {
			t.Errorf("answer %v, want the second upstream's 10.254.7.2", got)
		}
		if took < upstreamTimeout || took > upstreamTimeout+time.Second {
			t.Errorf("answered after %s, want just over the %s upstream timeout", took, upstreamTimeout)
		}
		if good.queries.Load() == before {
			t.Error("the second upstream was not asked")
		}
	})
	t.Run("all fail", func(t *testing.T) {
		fwd := startServe(t, Config{Upstreams: []netip.AddrPort{closedAddr}})
		if resp := ask(t, "udp", fwd.udp, "web.test.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
			t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
		}
		fwd = startServe(t, Config{Upstreams: []netip.AddrPort{closedAddr, servfail.addr}})
		if resp := ask(t, "tcp", fwd.tcp, "web.test.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
			t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
		}
	})
}

func TestServeTruncatedAnswerOverTCP(t *testing.T) {
	const n = 60
	// Over UDP the upstream says only that the answer is truncated.
	up := startUpstream(t, false, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
			m.Truncated = true
		} else {
			for i := range n {
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 10.254.8.%d", r.Question[0].Name, i+1))
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})
	fwd := startServe(t, Config{Upstreams: []netip.AddrPort{up.addr}})

	if resp := ask(t, "tcp", fwd.tcp, "big.test.", dns.TypeA); len(resp.Answer) != n || resp.Truncated {
		t.Errorf("TCP client: %d records (truncated %v), want all %d", len(resp.Answer), resp.Truncated, n)
	}
	if resp := ask(t, "udp", fwd.udp, "big.test.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(4096, false) }); len(resp.Answer) != n || resp.Truncated {
		t.Errorf("UDP client with 4096 bytes of EDNS: %d records (truncated %v), want all %d", len(resp.Answer), resp.Truncated, n)
	}
	// 60 A records take more than 512 bytes: a plain UDP client gets what
	// fits, and the truncated flag.
	resp := ask(t, "udp", fwd.udp, "big.test.", dns.TypeA)
	if len(resp.Answer) == 0 || len(resp.Answer) >= n || !resp.Truncated {
		t.Errorf("plain UDP client: %d records (truncated %v), want fewer than %d and the truncated flag", len(resp.Answer), resp.Truncated, n)
	}
	if got := up.tcp.Load(); got != 3 {
		t.Errorf("upstream got %d TCP queries, want 3 (one for each truncated UDP answer)", got)
	}
}

func TestServeConcurrent(t *testing.T) {
	const delay, queries = 300 * time.Millisecond, 40
	up := startUpstream(t, false, func(w dns.ResponseWriter, r *dns.Msg) {
		time.Sleep(delay)
		records(map[string]string{strings.ToLower(r.Question[0].Name): "10.254.9.9"})(w, r)
	})
	fwd := startServe(t, Config{Upstreams: []netip.AddrPort{up.addr}})
	start := time.Now()
	var wg sync.WaitGroup
	for i := range queries {
		network, addr := "udp", fwd.udp
		if i%4 == 0 {
			network, addr = "tcp", fwd.tcp
		}
		wg.Go(func() {
			resp := ask(t, network, addr, fmt.Sprintf("q%d.test.", i), dns.TypeA)
			if got := answers(resp); len(got) != 1 || got[0] != "10.254.9.9" {
				t.Errorf("q%d: %v", i, got)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > 4*delay {
		t.Errorf("%d queries with a %s upstream took %s: not answered concurrently", queries, delay, took)
	}
}

func TestServeStopsEverything(t *testing.T) {
	// A silent upstream keeps queries in flight when Serve's context ends.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	fwd := startServe(t, Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort(silent.LocalAddr().String())}})
	var wg sync.WaitGroup
	for i := range 8 {
		network, addr := "udp", fwd.udp
		if i%2 == 0 {
			network, addr = "tcp", fwd.tcp
		}
		wg.Go(func() {
			q := new(dns.Msg)
			q.SetQuestion("slow.test.", dns.TypeA)
			c := &dns.Client{Net: network, Timeout: 3 * time.Second}
			_, _, _ = c.Exchange(q, addr)
		})
	}
	// An idle TCP client too.
	idle, err := net.Dial("tcp", fwd.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// The queries reach the silent upstream before Serve is stopped.
	buf := make([]byte, 512)
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 8 {
		if _, _, err := silent.ReadFrom(buf); err != nil {
			t.Fatalf("the queries did not reach the upstream: %v", err)
		}
	}

	start := time.Now()
	if err := fwd.stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Serve took %s to return after its context ended", took)
	}
	// Serve's goroutines are gone when it returns (give those that are
	// returning a moment to go).
	var left []string
	for deadline := time.Now().Add(100 * time.Millisecond); ; time.Sleep(5 * time.Millisecond) {
		if left = serveGoroutines(); len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("%d goroutines of Serve left after it returned:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	// Both sockets are closed.
	if c, err := net.Dial("tcp", fwd.tcp); err == nil {
		c.Close()
		t.Error("the TCP listener still accepts after Serve returned")
	}
	if _, err := idle.Read(buf); err == nil {
		t.Error("the idle TCP client's connection is still open")
	}
	if pc, err := net.ListenPacket("udp", fwd.udp); err != nil {
		t.Errorf("the UDP socket is still bound after Serve returned: %v", err)
	} else {
		pc.Close()
	}
	wg.Wait()
}

// serveGoroutines returns the stacks of the goroutines that run Serve's
// code or its DNS servers', the test's own excepted.
func serveGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "_test.go") {
			continue
		}
		if strings.Contains(g, "/hostdns.") || strings.Contains(g, "miekg/dns.(*Server)") {
			out = append(out, g)
		}
	}
	return out
}

func TestServeInvalid(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := Serve(context.Background(), pc, nil, Config{}); err == nil || !strings.Contains(err.Error(), "no upstream") {
		t.Errorf("no upstream: err = %v", err)
	}
	// The socket was closed all the same.
	if _, err := pc.WriteTo([]byte("x"), pc.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("socket after Serve: write err = %v, want closed", err)
	}
	if err := Serve(context.Background(), nil, nil, Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}}); err == nil {
		t.Error("no socket: no error")
	}
}
