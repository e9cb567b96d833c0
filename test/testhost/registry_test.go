package testhost

import (
	"archive/tar"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func digestOf(t *testing.T, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestRegistryPushPullCountsStopStart(t *testing.T) {
	h := New(t, "registry")
	reg := h.ServeRegistry(t, RegistryOptions{Port: 5000})
	if reg.Host() != h.Addr().String()+":5000" || reg.URL() != "http://"+reg.Host() {
		t.Errorf("Host %s, URL %s", reg.Host(), reg.URL())
	}
	pushed := PushImage(t, reg, "app:v1", empty.Image, 256<<10)
	if reg.Requests("manifest") != 0 || reg.Requests("blob") != 0 {
		t.Errorf("a push counted as GETs: %d manifests, %d blobs", reg.Requests("manifest"), reg.Requests("blob"))
	}
	layers, err := pushed.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("pushed image layers %d, %v; want 1", len(layers), err)
	}
	pad := digestOf(t, layers[0])
	size, _ := layers[0].Size()
	if size < 256<<10 {
		t.Errorf("padding layer of %d bytes compressed, want at least %d (incompressible)", size, 256<<10)
	}
	// The padding is one file of the asked size.
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := tar.NewReader(rc).Next()
	rc.Close()
	if err != nil || hdr.Size != 256<<10 || !strings.HasPrefix(hdr.Name, "pad-") {
		t.Errorf("padding layer's first entry %+v, %v", hdr, err)
	}

	got, err := PullImage(reg.Host()+"/app:v1", reg.RemoteOptions()...)
	if err != nil {
		t.Fatalf("pull back: %v", err)
	}
	if digestOf(t, got) != digestOf(t, pushed) {
		t.Errorf("pulled %s, pushed %s", digestOf(t, got), digestOf(t, pushed))
	}
	// One manifest GET; blob GETs: the config and the layer, once each.
	if m, b := reg.Requests("manifest"), reg.Requests("blob"); m != 1 || b != 2 {
		t.Errorf("after one pull: %d manifest and %d blob GETs, want 1 and 2", m, b)
	}
	if n := reg.BlobGets(pad); n != 1 {
		t.Errorf("BlobGets(padding layer) = %d, want 1", n)
	}
	if n := reg.BlobBytes(); n < size || n > size+4096 {
		t.Errorf("BlobBytes = %d after one pull, want the padding layer's %d and a config", n, size)
	}
	// A second image on top of the first: its base layer is the first's.
	second := PushImage(t, reg, reg.Host()+"/base/app:v2", pushed, 1024)
	if l, _ := second.Layers(); len(l) != 2 || digestOf(t, l[0]) != pad {
		t.Errorf("image on a base: %d layers, want the base's and one more", len(l))
	}

	reg.Stop()
	c, err := net.DialTimeout("tcp", reg.Host(), 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("a connection to a stopped registry was accepted")
	}
	if !errors.Is(err, syscallECONNREFUSED) {
		t.Errorf("dial a stopped registry: %v, want connection refused", err)
	}
	reg.Start()
	if _, err := PullImage(reg.Host()+"/app:v1", reg.RemoteOptions()...); err != nil {
		t.Fatalf("pull after Start: %v", err)
	}
	if n := reg.BlobGets(pad); n != 2 {
		t.Errorf("BlobGets(padding layer) after a second pull = %d, want 2", n)
	}
}

func TestRegistryBasicAuth(t *testing.T) {
	h := New(t, "private")
	reg := h.ServeRegistry(t, RegistryOptions{BasicAuth: &[2]string{"ci", "s3cret"}})
	if reg.Addr().Port() == 0 {
		t.Fatal("no port picked")
	}
	PushImage(t, reg, "private/app:v1", empty.Image, 1024)
	tr := remote.WithTransport(reg.Transport())
	_, err := PullImage(reg.Host()+"/private/app:v1", tr)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous pull: %v, want 401", err)
	}
	_, err = PullImage(reg.Host()+"/private/app:v1", tr, remote.WithAuth(&authn.Basic{Username: "ci", Password: "wrong"}))
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("pull with a wrong password: %v, want 401", err)
	}
	if reg.Requests("manifest") != 0 {
		t.Errorf("refused requests counted: %d manifest GETs", reg.Requests("manifest"))
	}
	resp, err := (&http.Client{Transport: reg.Transport()}).Get(reg.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("GET /v2/ without credentials: %s, WWW-Authenticate %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	if _, err := PullImage(reg.Host()+"/private/app:v1", reg.RemoteOptions()...); err != nil {
		t.Errorf("pull with the credentials: %v", err)
	}
}

func TestRegistryTLS(t *testing.T) {
	h := New(t, "tls")
	reg := h.ServeRegistry(t, RegistryOptions{TLS: true, Port: 443})
	if reg.URL() != "https://"+h.Addr().String()+":443" {
		t.Errorf("URL %s", reg.URL())
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(reg.CAPEM()) {
		t.Fatalf("CAPEM is no PEM certificate: %q", reg.CAPEM())
	}
	img := PushImage(t, reg, "app:v1", empty.Image, 1024)
	got, err := PullImage(reg.Host()+"/app:v1", reg.RemoteOptions()...)
	if err != nil || digestOf(t, got) != digestOf(t, img) {
		t.Fatalf("pull with the CA: %v", err)
	}
	// Without the CA (system roots only) the certificate is refused; the
	// certificate names the test host's address.
	c, err := tls.Dial("tcp", reg.Host(), &tls.Config{})
	if err == nil {
		c.Close()
		t.Error("the registry's certificate verified against the system roots")
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("TLS without the CA: %v, want an unknown authority", err)
	}
	c, err = tls.Dial("tcp", reg.Host(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS with the CA: %v", err)
	}
	c.Close()
	c, err = tls.Dial("tcp", reg.Host(), &tls.Config{RootCAs: pool, ServerName: "other.test"})
	if err == nil {
		c.Close()
		t.Error("the certificate verified for another name")
	}
	// Plain HTTP gets no registry answer.
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}).Get("http://" + reg.Host() + "/v2/")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the TLS registry answered 200")
		}
	}
}

func TestRegistryThrottle(t *testing.T) {
	h := New(t, "slow")
	reg := h.ServeRegistry(t, RegistryOptions{Throttle: 512 << 10})
	start := time.Now()
	img := PushImage(t, reg, "app:v1", empty.Image, 256<<10)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a push of 256 KiB took %s: pushes are not throttled", d)
	}
	start = time.Now()
	if _, err := PullImage(reg.Host()+"/app:v1", reg.RemoteOptions()...); err != nil {
		t.Fatal(err)
	}
	// 256 KiB at 512 KiB/s: half a second at least.
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Errorf("pull of 256 KiB at 512 KiB/s took %s", d)
	}
	_ = img
}

func TestCommandRunsInTestHost(t *testing.T) {
	h := New(t, "cmd")
	out, err := h.Command("ip", "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			t.Skip(err)
		}
		t.Fatalf("ip addr in the test host: %v: %s", err, out)
	}
	if !strings.Contains(string(out), " "+h.Addr().String()+"/30 ") {
		t.Errorf("ip addr in the test host: %s, want %s", out, h.Addr())
	}
}

var syscallECONNREFUSED = syscall.ECONNREFUSED
