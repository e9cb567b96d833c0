package local

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/internal/pki"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// plannedCluster writes the certificates and kubeconfigs of a cluster with
// a real node, valid for validity from now, into a hand-made cluster dir.
func plannedCluster(t *testing.T, p *Provider, name string, now time.Time, validity time.Duration) string {
	t.Helper()
	dir := makeClusterDir(t, p, name)
	write(t, filepath.Join(dir, clusterFile), testPlan(name))
	ca, err := writePKI(dir, defaultServiceSubnet, netip.MustParseAddr("10.250.0.2"), nil, now, validity)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKubeconfigs(dir, ca, name, "https://10.250.0.2:6443", true, now, validity); err != nil {
		t.Fatal(err)
	}
	return dir
}

// certInfo is what must survive a renewal of one leaf, and what must not.
type certInfo struct {
	spec     pki.CertSpec
	issuer   string
	serial   string
	notAfter time.Time
}

// leafInfos reads every leaf of the cluster in dir by where it is, checking
// that each key matches its certificate.
func leafInfos(t *testing.T, dir string) map[string]certInfo {
	t.Helper()
	out := map[string]certInfo{}
	crts, _ := filepath.Glob(filepath.Join(dir, pkiDir, "*.crt"))
	for _, crt := range crts {
		certPEM, _ := os.ReadFile(crt)
		cert, err := pki.ParseCert(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		if cert.IsCA {
			continue
		}
		keyPEM, _ := os.ReadFile(strings.TrimSuffix(crt, ".crt") + ".key")
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Errorf("%s: %v", crt, err)
		}
		out[filepath.Base(crt)] = info(cert)
	}
	kcs, _ := filepath.Glob(filepath.Join(dir, "*kubeconfig"))
	for _, kc := range kcs {
		cfg, err := clientcmd.LoadFromFile(kc)
		if err != nil {
			t.Fatal(err)
		}
		for user, auth := range cfg.AuthInfos {
			if _, err := tls.X509KeyPair(auth.ClientCertificateData, auth.ClientKeyData); err != nil {
				t.Errorf("%s user %s: %v", kc, user, err)
			}
			cert, err := pki.ParseCert(auth.ClientCertificateData)
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(kc)+"/"+user] = info(cert)
		}
	}
	return out
}

func info(c *x509.Certificate) certInfo {
	return certInfo{spec: pki.SpecOf(c), issuer: c.Issuer.CommonName, serial: c.SerialNumber.String(), notAfter: c.NotAfter}
}

// trustedFiles are what a renewal keeps as they are.
var trustedFiles = []string{"ca.crt", "ca.key", "etcd-ca.crt", "etcd-ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub"}

func readFiles(t *testing.T, dir string, names []string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, pkiDir, n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = b
	}
	return out
}

// verifyChains checks every leaf against the CA it must chain to now.
func verifyChains(t *testing.T, dir string, now time.Time) {
	t.Helper()
	pool := func(file string) *x509.CertPool {
		b, err := os.ReadFile(filepath.Join(dir, pkiDir, file))
		if err != nil {
			t.Fatal(err)
		}
		p := x509.NewCertPool()
		p.AppendCertsFromPEM(b)
		return p
	}
	cluster, etcd, frontProxy := pool("ca.crt"), pool("etcd-ca.crt"), pool("front-proxy-ca.crt")
	for where, pemData := range leafPEMs(t, dir) {
		cert, _ := pki.ParseCert(pemData)
		roots := cluster
		switch base := filepath.Base(where); {
		case strings.HasPrefix(base, "etcd-") || strings.HasPrefix(base, "apiserver-etcd-"):
			roots = etcd
		case strings.HasPrefix(base, "front-proxy-"):
			roots = frontProxy
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not verify: %v", where, err)
		}
	}
}

func leafPEMs(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	crts, _ := filepath.Glob(filepath.Join(dir, pkiDir, "*.crt"))
	for _, crt := range crts {
		b, _ := os.ReadFile(crt)
		if c, _ := pki.ParseCert(b); c != nil && !c.IsCA {
			out[crt] = b
		}
	}
	kcs, _ := filepath.Glob(filepath.Join(dir, "*kubeconfig"))
	for _, kc := range kcs {
		cfg, _ := clientcmd.LoadFromFile(kc)
		for user, auth := range cfg.AuthInfos {
			out[kc+"/"+user] = auth.ClientCertificateData
		}
	}
	return out
}

func TestRenewCertificates(t *testing.T) {
	ctx := context.Background()
	created := testCreatedAt
	p := newTestProvider(t)
	p.now = func() time.Time { return created }
	dir := plannedCluster(t, p, "c", created, 2*time.Hour)
	before := leafInfos(t, dir)
	trusted := readFiles(t, dir, trustedFiles)
	// 9 in pki (with the real node's kubelet-server and the front
	// proxy's client) and 6 kubeconfigs.
	if len(before) != 15 {
		t.Fatalf("found %d leaves, want 15: %v", len(before), before)
	}

	renewed, err := p.RenewCertificates(ctx, "c", time.Hour)
	if err != nil || renewed {
		t.Fatalf("RenewCertificates 2h before expiry, within 1h = %v, %v; want nothing done", renewed, err)
	}
	if diff := cmp.Diff(before, leafInfos(t, dir), cmp.AllowUnexported(certInfo{})); diff != "" {
		t.Fatalf("certificates changed without a renewal:\n%s", diff)
	}

	// An hour later they expire within 1h; renewed with the default
	// validity, a year.
	later := created.Add(time.Hour)
	p.now = func() time.Time { return later }
	p.leafValidity = 0
	renewed, err = p.RenewCertificates(ctx, "c", time.Hour)
	if err != nil || !renewed {
		t.Fatalf("RenewCertificates 1h before expiry, within 1h = %v, %v; want renewed", renewed, err)
	}
	after := leafInfos(t, dir)
	if len(after) != len(before) {
		t.Fatalf("after renewal %d leaves, want %d", len(after), len(before))
	}
	for where, b := range before {
		a := after[where]
		if a.serial == b.serial {
			t.Errorf("%s not renewed", where)
		}
		if want := later.Add(365 * 24 * time.Hour); !a.notAfter.Equal(want) {
			t.Errorf("%s: NotAfter = %v, want %v", where, a.notAfter, want)
		}
		if diff := cmp.Diff(b.spec, a.spec); diff != "" || a.issuer != b.issuer {
			t.Errorf("%s renewed unlike the old one (issuer %s, was %s):\n%s", where, a.issuer, b.issuer, diff)
		}
	}
	if diff := cmp.Diff(trusted, readFiles(t, dir, trustedFiles)); diff != "" {
		t.Errorf("a renewal changed the CAs or the service account key:\n%s", diff)
	}
	verifyChains(t, dir, later)

	// Expired ones are renewed too, whatever within says.
	p.now = func() time.Time { return later.Add(400 * 24 * time.Hour) }
	if renewed, err := p.RenewCertificates(ctx, "c", 0); err != nil || !renewed {
		t.Errorf("RenewCertificates of expired certificates = %v, %v; want renewed", renewed, err)
	}
}

// TestRenewCertificatesWithoutEtcdCAKey: a cluster made before the etcd
// CA's key was kept gets a new etcd CA, and everything the old one issued
// is issued again by the new one; the cluster CA stays.
func TestRenewCertificatesWithoutEtcdCAKey(t *testing.T) {
	p := newTestProvider(t)
	p.now = func() time.Time { return testCreatedAt }
	dir := plannedCluster(t, p, "old", testCreatedAt, time.Hour)
	if err := os.Remove(filepath.Join(dir, pkiDir, "etcd-ca.key")); err != nil {
		t.Fatal(err)
	}
	kept := readFiles(t, dir, []string{"ca.crt", "ca.key", "sa.key", "sa.pub"})
	oldEtcdCA := readFiles(t, dir, []string{"etcd-ca.crt"})["etcd-ca.crt"]

	renewed, err := p.RenewCertificates(context.Background(), "old", 2*time.Hour)
	if err != nil || !renewed {
		t.Fatalf("RenewCertificates = %v, %v; want renewed", renewed, err)
	}
	if bytes.Equal(oldEtcdCA, readFiles(t, dir, []string{"etcd-ca.crt"})["etcd-ca.crt"]) {
		t.Error("etcd CA kept although its key is gone")
	}
	if _, err := os.Stat(filepath.Join(dir, pkiDir, "etcd-ca.key")); err != nil {
		t.Errorf("new etcd CA key not kept: %v", err)
	}
	if diff := cmp.Diff(kept, readFiles(t, dir, []string{"ca.crt", "ca.key", "sa.key", "sa.pub"})); diff != "" {
		t.Errorf("the cluster CA or service account key changed:\n%s", diff)
	}
	verifyChains(t, dir, testCreatedAt)
}

func TestRenewCertificatesRefusals(t *testing.T) {
	ctx := context.Background()
	p := newTestProvider(t)
	for _, name := range []string{"missing", "Bad_Name"} {
		if _, err := p.RenewCertificates(ctx, name, time.Hour); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("RenewCertificates(%q) = %v, want ErrNotFound", name, err)
		}
	}
	dir := plannedCluster(t, p, "busy", p.now(), time.Hour)
	hold(t, dir, createLock)
	if renewed, err := p.RenewCertificates(ctx, "busy", 2*time.Hour); err == nil || renewed {
		t.Errorf("RenewCertificates during a create or restart = %v, %v; want an error", renewed, err)
	}
}
