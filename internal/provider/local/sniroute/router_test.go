package sniroute

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// routes is a Lookup over a fixed table that counts its calls.
type routes struct {
	mu      sync.Mutex
	table   map[string]string
	lookups []string
	dials   []string
}

func (r *routes) lookup(_ context.Context, name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups = append(r.lookups, name)
	b, ok := r.table[name]
	return b, ok
}

func (r *routes) dial(ctx context.Context, network, address string) (net.Conn, error) {
	r.mu.Lock()
	r.dials = append(r.dials, address)
	r.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

func (r *routes) calls() (lookups, dials []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lookups), slices.Clone(r.dials)
}

func (r *routes) router() *Router {
	return &Router{Lookup: r.lookup, Dial: r.dial}
}

// TestRouterTLS routes real TLS clients to two backends, each with its own
// CA, as two clusters: a client verifying cluster a's CA reaches a, and
// asking for b with a's CA reaches b but fails verification.
func TestRouterTLS(t *testing.T) {
	a := newBackend(t, "a", "a.example.test")
	b := newBackend(t, "b", "b.example.test")
	rt := &routes{table: map[string]string{"a.example.test": a.addr(), "b.example.test": b.addr()}}
	addr := startRouter(t, rt.router())

	tests := []struct {
		name                 string
		ca                   testCA
		serverName           string
		wantBody             string // "" when the request must fail
		wantUnknownAuthority bool
		wantDial             string // the backend dialed, "" for none
		wantAccept           *backend
	}{
		{name: "a", ca: a.ca, serverName: "a.example.test", wantBody: "a a.example.test", wantDial: a.addr(), wantAccept: a},
		{name: "b", ca: b.ca, serverName: "b.example.test", wantBody: "b b.example.test", wantDial: b.addr(), wantAccept: b},
		{name: "name in upper case", ca: a.ca, serverName: "A.EXAMPLE.TEST", wantBody: "a A.EXAMPLE.TEST", wantDial: a.addr(), wantAccept: a},
		{name: "a's CA, b's name", ca: a.ca, serverName: "b.example.test", wantUnknownAuthority: true, wantDial: b.addr(), wantAccept: b},
		{name: "b's CA, a's name", ca: b.ca, serverName: "a.example.test", wantUnknownAuthority: true, wantDial: a.addr(), wantAccept: a},
		{name: "unknown name", ca: a.ca, serverName: "c.example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, dials0 := rt.calls()
			acceptedA, acceptedB := a.accepted.Load(), b.accepted.Load()
			tr := &http.Transport{
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, addr)
				},
				TLSClientConfig:   &tls.Config{RootCAs: tt.ca.pool, ServerName: tt.serverName},
				DisableKeepAlives: true,
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			resp, err := client.Get("https://cluster.invalid/")
			if tt.wantBody != "" {
				if err != nil {
					t.Fatalf("GET through the router: %v", err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if string(body) != tt.wantBody {
					t.Errorf("body = %q, want %q", body, tt.wantBody)
				}
				// The client's handshake was with the backend's certificate.
				if got := resp.TLS.PeerCertificates[0].DNSNames; !slices.Equal(got, []string{tt.wantAccept.dnsName}) {
					t.Errorf("peer certificate names = %v", got)
				}
			} else {
				if err == nil {
					resp.Body.Close()
					t.Fatal("GET through the router succeeded, want an error")
				}
				var uae x509.UnknownAuthorityError
				if got := errors.As(err, &uae); got != tt.wantUnknownAuthority {
					t.Errorf("GET error = %v; unknown authority %v, want %v", err, got, tt.wantUnknownAuthority)
				}
			}
			_, dials := rt.calls()
			var wantDials []string
			if tt.wantDial != "" {
				wantDials = []string{tt.wantDial}
			}
			if got := dials[len(dials0):]; !slices.Equal(got, wantDials) {
				t.Errorf("dialed %v, want %v", got, wantDials)
			}
			gotA, gotB := a.accepted.Load()-acceptedA, b.accepted.Load()-acceptedB
			wantA, wantB := int64(0), int64(0)
			switch tt.wantAccept {
			case a:
				wantA = 1
			case b:
				wantB = 1
			}
			if gotA != wantA || gotB != wantB {
				t.Errorf("backend connections a=%d b=%d, want a=%d b=%d", gotA, gotB, wantA, wantB)
			}
		})
	}
}

// TestRouterPassThrough checks that the backend gets the client's bytes
// exactly, the ClientHello first, and that each end is passed on as a
// half-close.
func TestRouterPassThrough(t *testing.T) {
	got := make(chan []byte, 1)
	be := serveOnce(t, func(c net.Conn) {
		b, _ := io.ReadAll(c) // until the client's half-close
		got <- b
		_, _ = c.Write([]byte("reply after EOF"))
	})
	rt := &routes{table: map[string]string{"h.example.test": be}}
	addr := startRouter(t, rt.router())

	hello := clientHello(t, &tls.Config{ServerName: "h.example.test"})
	payload := append(slices.Clone(hello), []byte("and then some application data")...)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := readAll(c)
	if err != nil {
		t.Fatalf("read the reply: %v", err)
	}
	if string(reply) != "reply after EOF" {
		t.Errorf("reply = %q, want %q", reply, "reply after EOF")
	}
	if b := <-got; !bytes.Equal(b, payload) {
		t.Errorf("backend received %d bytes, want the client's %d", len(b), len(payload))
	}
}

// TestRouterRefuses checks that connections without a usable server name
// are closed without a lookup or a dial.
func TestRouterRefuses(t *testing.T) {
	tests := []struct {
		name     string
		send     []byte
		timeout  time.Duration // the router's HelloTimeout
		minAlive time.Duration // the connection lasts at least this long
	}{
		{name: "not TLS", send: []byte("GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n")},
		{name: "no SNI", send: clientHello(t, &tls.Config{InsecureSkipVerify: true})},
		{name: "silent client", timeout: 200 * time.Millisecond, minAlive: 200 * time.Millisecond},
		{name: "half a hello", send: clientHello(t, &tls.Config{ServerName: "a.example.test"})[:10], timeout: 200 * time.Millisecond, minAlive: 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &routes{table: map[string]string{"a.example.test": "127.0.0.1:1"}}
			r := rt.router()
			r.HelloTimeout = tt.timeout
			addr := startRouter(t, r)
			start := time.Now()
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(c)
			alive := time.Since(start)
			if len(got) != 0 {
				t.Errorf("client received %q, want nothing", got)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after %v", alive)
			}
			if alive < tt.minAlive {
				t.Errorf("connection closed after %v, want at least %v", alive, tt.minAlive)
			}
			if lookups, dials := rt.calls(); len(lookups) != 0 || len(dials) != 0 {
				t.Errorf("lookups %v, dials %v, want none", lookups, dials)
			}
		})
	}
}

// TestServeCancel ends Serve with a routed connection and one waiting for
// its hello open: Serve returns, both are closed, no goroutine is left.
func TestServeCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a := newBackend(t, "a", "a.example.test")
	defer a.srv.Close() // before goleak looks
	rt := &routes{table: map[string]string{"a.example.test": a.addr()}}
	ln := listenLoopback(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rt.router().Serve(ctx, ln) }()

	routed, err := tls.Dial("tcp4", ln.Addr().String(), &tls.Config{RootCAs: a.ca.pool, ServerName: "a.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer routed.Close()
	waiting, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve() = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Serve did not return after cancel:\n%s", buf[:runtime.Stack(buf, true)])
	}
	for name, c := range map[string]net.Conn{"routed": routed, "waiting": waiting} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s connection: read = %v, want it closed", name, err)
		}
	}
	if _, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
		t.Error("listener still accepts after Serve returned")
	}
}

func TestServeNoLookup(t *testing.T) {
	ln := listenLoopback(t, 0)
	if err := (&Router{}).Serve(context.Background(), ln); err == nil {
		t.Fatal("Serve with a nil Lookup: no error")
	}
}

// serveOnce runs handle on the first connection to a new loopback
// listener, then closes the connection, and returns the listener's
// address.
func serveOnce(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		handle(c)
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String()
}
