package testhost

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// RegistryOptions configure ServeRegistry.
type RegistryOptions struct {
	// Port is the port to listen on; 0 picks one.
	Port int
	// BasicAuth, if set, is the only user and password let in: other
	// requests get 401 with a Basic WWW-Authenticate challenge.
	BasicAuth *[2]string
	// TLS serves HTTPS with a certificate for the test host's address,
	// signed by a CA made for this registry (Registry.CAPEM).
	TLS bool
	// Throttle, if positive, is the rate in bytes per second at which
	// blob bodies are sent.
	Throttle int
}

// Registry is an OCI distribution registry (go-containerregistry's
// pkg/registry, in memory) served by a test host. It counts the GET
// requests it serves (after authentication).
type Registry struct {
	h       *Host
	opts    RegistryOptions
	addr    netip.AddrPort
	handler http.Handler
	caPEM   []byte
	tlsCfg  *tls.Config

	mu        sync.Mutex
	srv       *http.Server
	done      chan struct{}
	manifests int
	blobs     int
	blobGets  map[string]int
	blobBytes int64
}

// ServeRegistry serves an empty registry on the test host until the test
// ends (or Stop). Its content lives in the test process, so it survives
// Stop and Start.
func (h *Host) ServeRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	r := &Registry{
		h:        h,
		opts:     opts,
		blobGets: map[string]int{},
		handler:  registry.New(registry.Logger(log.New(io.Discard, "", 0))),
	}
	if opts.TLS {
		var err error
		if r.caPEM, r.tlsCfg, err = newServingTLS(h.addr); err != nil {
			t.Fatalf("test host %s: registry certificates: %v", h.name, err)
		}
	}
	l, err := r.listen(opts.Port)
	if err != nil {
		t.Fatalf("test host %s: registry: %v", h.name, err)
	}
	r.addr = netip.AddrPortFrom(h.addr, uint16(l.Addr().(*net.TCPAddr).Port))
	r.serve(l)
	t.Cleanup(r.Stop)
	return r
}

// Addr is where the registry listens: the test host's address and the port.
func (r *Registry) Addr() netip.AddrPort { return r.addr }

// Host is "IP:PORT", the registry part of image references.
func (r *Registry) Host() string { return r.addr.String() }

// URL is "http://IP:PORT" or "https://IP:PORT".
func (r *Registry) URL() string {
	if r.opts.TLS {
		return "https://" + r.Host()
	}
	return "http://" + r.Host()
}

// CAPEM is the PEM certificate of the CA that signed the registry's serving
// certificate (nil without TLS).
func (r *Registry) CAPEM() []byte { return r.caPEM }

// Transport is an HTTP transport that reaches the registry directly (no
// proxy) and, with TLS, trusts its CA and nothing else.
func (r *Registry) Transport() http.RoundTripper {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if r.opts.TLS {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(r.caPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return tr
}

// RemoteOptions are the options for go-containerregistry's remote package
// that reach the registry: Transport and, if it has one, its user.
func (r *Registry) RemoteOptions() []remote.Option {
	opts := []remote.Option{remote.WithTransport(r.Transport())}
	if a := r.opts.BasicAuth; a != nil {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: a[0], Password: a[1]}))
	}
	return opts
}

// Requests is the number of GET requests of kind "manifest" or "blob"
// served so far.
func (r *Registry) Requests(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch kind {
	case "manifest":
		return r.manifests
	case "blob":
		return r.blobs
	}
	panic("testhost: Registry.Requests: unknown kind " + strconv.Quote(kind))
}

// BlobGets is the number of GET requests served so far for the blob with
// digest ("sha256:...").
func (r *Registry) BlobGets(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[digest]
}

// BlobBytes is the number of bytes of blob bodies sent so far (GETs).
func (r *Registry) BlobBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobBytes
}

// Stop closes the listener and every connection: connections to the
// registry are refused until Start.
func (r *Registry) Stop() {
	r.mu.Lock()
	srv, done := r.srv, r.done
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
		<-done
	}
}

// Start serves again, with the same content on the same port, after Stop.
// It panics if the port cannot be had again.
func (r *Registry) Start() {
	r.mu.Lock()
	running := r.srv != nil
	r.mu.Unlock()
	if running {
		return
	}
	l, err := r.listen(int(r.addr.Port()))
	if err != nil {
		panic(fmt.Sprintf("testhost: restart registry on %s: %v", r.addr, err))
	}
	r.serve(l)
}

func (r *Registry) listen(port int) (net.Listener, error) {
	var l net.Listener
	err := r.h.Do(func() error {
		var err error
		l, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on port %d: %w", port, err)
	}
	if r.tlsCfg != nil {
		l = tls.NewListener(l, r.tlsCfg)
	}
	return l, nil
}

func (r *Registry) serve(l net.Listener) {
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler:           http.HandlerFunc(r.serveHTTP),
		ErrorLog:          log.New(io.Discard, "", 0), // refused TLS handshakes are expected
	}
	done := make(chan struct{})
	r.mu.Lock()
	r.srv, r.done = srv, done
	r.mu.Unlock()
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
}

func (r *Registry) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if a := r.opts.BasicAuth; a != nil {
		if u, p, ok := req.BasicAuth(); !ok || u != a[0] || p != a[1] {
			w.Header().Set("WWW-Authenticate", `Basic realm="testhost"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
	}
	kind, digest := classify(req.URL.Path)
	if req.Method == http.MethodGet && kind != "" {
		r.mu.Lock()
		if kind == "manifest" {
			r.manifests++
		} else {
			r.blobs++
			r.blobGets[digest]++
		}
		r.mu.Unlock()
	}
	if kind == "blob" && req.Method == http.MethodGet {
		w = &blobWriter{ResponseWriter: w, r: r, rate: r.opts.Throttle}
	}
	r.handler.ServeHTTP(w, req)
}

// classify tells a manifest path (/v2/NAME/manifests/REF) from a blob path
// (/v2/NAME/blobs/DIGEST, with the digest) and others ("").
func classify(path string) (kind, digest string) {
	elems := strings.Split(strings.TrimSuffix(path, "/"), "/")
	if len(elems) < 5 || elems[1] != "v2" {
		return "", ""
	}
	switch elems[len(elems)-2] {
	case "manifests":
		return "manifest", ""
	case "blobs":
		return "blob", elems[len(elems)-1]
	}
	return "", ""
}

// blobWriter counts the bytes of a blob body in r.blobBytes and, if rate
// is positive, writes at most rate bytes per second, in tenths of a
// second, flushing each.
type blobWriter struct {
	http.ResponseWriter
	r    *Registry
	rate int
}

func (w *blobWriter) Write(p []byte) (int, error) {
	chunk := len(p)
	if w.rate > 0 {
		chunk = max(w.rate/10, 1)
	}
	n := 0
	for len(p) > 0 {
		c := min(chunk, len(p))
		m, err := w.ResponseWriter.Write(p[:c])
		n += m
		w.r.mu.Lock()
		w.r.blobBytes += int64(m)
		w.r.mu.Unlock()
		if err != nil {
			return n, err
		}
		p = p[c:]
		if w.rate > 0 {
			if f, ok := w.ResponseWriter.(http.Flusher); ok {
				f.Flush()
			}
			time.Sleep(time.Duration(c) * time.Second / time.Duration(w.rate))
		}
	}
	return n, nil
}

// newServingTLS makes a CA and a serving certificate for addr signed by it.
func newServingTLS(addr netip.Addr) (caPEM []byte, cfg *tls.Config, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "testhost registry CA " + addr.String()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: addr.String()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{addr.AsSlice()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}

// PushImage appends to base (empty.Image for none) one layer holding a
// file of padBytes random, incompressible bytes, and pushes the result to
// reg as ref ("REPO:TAG", or a full reference naming reg; go-containerregistry
// wants repositories of 2 characters at least) from the test
// process, with reg's CA and credentials. It returns the pushed image.
func PushImage(t testing.TB, reg *Registry, ref string, base v1.Image, padBytes int64) v1.Image {
	t.Helper()
	if !strings.HasPrefix(ref, reg.Host()+"/") {
		ref = reg.Host() + "/" + ref
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatalf("PushImage: %v", err)
	}
	layer, err := padLayer(padBytes)
	if err != nil {
		t.Fatalf("PushImage %s: padding layer: %v", ref, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "testhost.PushImage padding", Created: v1.Time{Time: time.Now()}}})
	if err != nil {
		t.Fatalf("PushImage %s: %v", ref, err)
	}
	if err := remote.Write(r, img, reg.RemoteOptions()...); err != nil {
		t.Fatalf("PushImage %s: %v", ref, err)
	}
	return img
}

// PullImage fetches ref's manifest, config and every layer's bytes, as a
// node's pull does: go-containerregistry checks each against its digest.
// It returns the image, or the first error.
func PullImage(ref string, opts ...remote.Option) (v1.Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

// padLayer is a gzipped tar layer with one file, /pad-<random>, of n
// random bytes: each call's layer is new to every registry.
func padLayer(n int64) (v1.Layer, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("pad-%x", id), Mode: 0o644, Size: n, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := io.CopyN(tw, rand.Reader, n); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
