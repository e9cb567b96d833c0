package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// clusterPort reads one port of a cluster's plan, like "etcdPeer".
func (h *harness) clusterPort(name, which string) int {
	h.t.Helper()
	ports := h.planPorts(name)
	port := ports[which]
	if port == 0 {
		h.t.Fatalf("cluster plan has no %s port: %v", which, ports)
	}
	return port
}

// assertEtcdPeerPortClosed checks that etcd's peer port on the host's
// loopback, which a single member does not need but listens on anyway,
// lets nobody in but the member's own peer certificate: not plain HTTP, not
// TLS without a client certificate, not another certificate of the etcd CA.
// The peer certificate itself gets an answer, so the refusals are the
// port's, not a port that is down.
func (h *harness) assertEtcdPeerPortClosed(name string) {
	h.t.Helper()
	t := h.t
	addr := "127.0.0.1:" + strconv.Itoa(h.clusterPort(name, "etcdPeer"))
	pki := filepath.Join(h.clusterDir(name), "pki")
	caPEM, err := os.ReadFile(filepath.Join(pki, "etcd-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	keyPair := func(base string) []tls.Certificate {
		t.Helper()
		c, err := tls.LoadX509KeyPair(filepath.Join(pki, base+".crt"), filepath.Join(pki, base+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	// get returns the status and body of GET /members, the member list
	// etcd's peer handler serves.
	get := func(scheme string, certs []tls.Certificate) (int, string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs},
		}}
		resp, err := c.Get(scheme + "://" + addr + "/members")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if code, body, err := get("http", nil); err == nil && code == http.StatusOK {
		t.Errorf("etcd's peer port answers plain HTTP: %s", body)
	}
	if code, body, err := get("https", nil); err == nil {
		t.Errorf("etcd's peer port answers TLS without a client certificate: %d %s", code, body)
	}
	if code, body, err := get("https", keyPair("apiserver-etcd-client")); err == nil {
		t.Errorf("etcd's peer port answers a client certificate that is not the peer's: %d %s", code, body)
	}
	if code, body, err := get("https", keyPair("etcd-peer")); err != nil || code != http.StatusOK {
		t.Errorf("etcd's peer port does not answer its own peer certificate: %d %s %v", code, body, err)
	}
}
