package sniroute

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// testCA is a certificate authority of its own with a server certificate
// for one DNS name, as each cluster has.
type testCA struct {
	pool *x509.CertPool
	cert tls.Certificate
}

func newTestCA(t testing.TB, dnsName string) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ca for " + dnsName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return testCA{pool: pool, cert: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}}
}

// backend is a TLS HTTPS server on loopback answering "<name> <SNI>".
type backend struct {
	ca       testCA
	dnsName  string
	srv      *httptest.Server
	accepted atomic.Int64 // TCP connections accepted
}

func newBackend(t testing.TB, name, dnsName string) *backend {
	t.Helper()
	b := &backend{ca: newTestCA(t, dnsName), dnsName: dnsName}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name+" "+r.TLS.ServerName)
	}))
	b.srv.TLS = &tls.Config{Certificates: []tls.Certificate{b.ca.cert}}
	b.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes refused on purpose
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.accepted.Add(1)
		}
	}
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	return b
}

// addr is the backend's host:port.
func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// clientHello is the ClientHello a Go TLS client sends for cfg.
func clientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	c := &captureConn{}
	err := tls.Client(c, cfg).Handshake()
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("capture ClientHello: %v", err)
	}
	if len(c.written) == 0 {
		t.Fatal("capture ClientHello: nothing written")
	}
	return c.written
}

// captureConn keeps what is written to it and ends every read.
type captureConn struct {
	net.Conn // nil: only Read and Write are used
	written  []byte
}

func (c *captureConn) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }
func (c *captureConn) Write(p []byte) (int, error) {
	c.written = append(c.written, p...)
	return len(p), nil
}

// startRouter serves r on a loopback listener from Listen until the test
// ends and returns its address; Serve's result is checked at the end.
func startRouter(t testing.TB, r *Router) string {
	t.Helper()
	ln := listenLoopback(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// listenLoopback is a listener from Listen on 127.0.0.1:port.
func listenLoopback(t testing.TB, port uint16) net.Listener {
	t.Helper()
	f, err := Listen(netipLoopback(port))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// readAll reads c until EOF or an error and returns what it read and the
// error (nil at EOF), giving up after 5 s.
func readAll(c net.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return io.ReadAll(c)
}

// netipLoopback is 127.0.0.1:port.
func netipLoopback(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}
