package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// now is fixed so validity checks do not depend on the wall clock.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test-ca", now)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// parseCert decodes a single PEM CERTIFICATE block.
func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(data)
	if block == nil {
		t.Fatalf("no PEM block in %q", data)
	}
	if block.Type != "CERTIFICATE" {
		t.Fatalf("PEM type = %q, want CERTIFICATE", block.Type)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("trailing data after certificate: %q", rest)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return cert
}

// parseKey decodes a single PEM PKCS8 PRIVATE KEY block.
func parseKey(t *testing.T, data []byte) crypto.Signer {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("no PEM block in key")
	}
	if block.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM type = %q, want PRIVATE KEY (PKCS8)", block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("parse PKCS8 key: %v", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		t.Fatalf("key is %T, not a crypto.Signer", key)
	}
	return signer
}

func sorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Sorted(slices.Values(s))
}

type publicKey interface{ Equal(crypto.PublicKey) bool }

func samePublicKey(t *testing.T, a, b crypto.PublicKey) bool {
	t.Helper()
	pa, ok := a.(publicKey)
	if !ok {
		t.Fatalf("public key %T has no Equal method", a)
	}
	return pa.Equal(b)
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t)
	cert := parseCert(t, ca.CertPEM())

	if !cert.IsCA || !cert.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want both true", cert.IsCA, cert.BasicConstraintsValid)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage = %v, want CertSign set", cert.KeyUsage)
	}
	if cert.Subject.CommonName != "test-ca" {
		t.Errorf("Subject.CommonName = %q, want %q", cert.Subject.CommonName, "test-ca")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if !cert.NotBefore.Before(now) {
		t.Errorf("NotBefore = %v, want before %v", cert.NotBefore, now)
	}
	if !cert.NotAfter.After(now) {
		t.Errorf("NotAfter = %v, want after %v", cert.NotAfter, now)
	}

	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatalf("KeyPEM: %v", err)
	}
	key := parseKey(t, keyPEM)
	if !samePublicKey(t, key.Public(), cert.PublicKey) {
		t.Error("CA key does not match the CA certificate's public key")
	}
}

func TestIssueVerify(t *testing.T) {
	ca := newTestCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(parseCert(t, ca.CertPEM()))

	type check struct {
		name    string // DNS name or IP to verify; "" for none
		usage   x509.ExtKeyUsage
		wantErr bool
	}
	tests := []struct {
		name   string
		spec   CertSpec
		checks []check
	}{
		{
			name: "server",
			spec: CertSpec{
				CommonName: "kube-apiserver",
				DNSNames:   []string{"localhost", "kubernetes.default.svc"},
				IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
				Usage:      ServerAuth,
			},
			checks: []check{
				{name: "localhost", usage: x509.ExtKeyUsageServerAuth},
				{name: "kubernetes.default.svc", usage: x509.ExtKeyUsageServerAuth},
				{name: "127.0.0.1", usage: x509.ExtKeyUsageServerAuth},
				{name: "10.96.0.1", usage: x509.ExtKeyUsageServerAuth},
				{name: "example.com", usage: x509.ExtKeyUsageServerAuth, wantErr: true},
				{name: "10.0.0.1", usage: x509.ExtKeyUsageServerAuth, wantErr: true},
				{usage: x509.ExtKeyUsageClientAuth, wantErr: true},
			},
		},
		{
			name: "client",
			spec: CertSpec{
				CommonName:   "admin",
				Organization: []string{"system:masters"},
				Usage:        ClientAuth,
			},
			checks: []check{
				{usage: x509.ExtKeyUsageClientAuth},
				{usage: x509.ExtKeyUsageServerAuth, wantErr: true},
			},
		},
		{
			name: "server and client",
			spec: CertSpec{
				CommonName: "etcd",
				DNSNames:   []string{"localhost"},
				IPs:        []net.IP{net.ParseIP("127.0.0.1")},
				Usage:      ServerAuth | ClientAuth,
			},
			checks: []check{
				{name: "localhost", usage: x509.ExtKeyUsageServerAuth},
				{name: "127.0.0.1", usage: x509.ExtKeyUsageServerAuth},
				{usage: x509.ExtKeyUsageClientAuth},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ca.Issue(tt.spec, now)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			cert := parseCert(t, kp.CertPEM)
			for _, c := range tt.checks {
				_, err := cert.Verify(x509.VerifyOptions{
					DNSName:     c.name,
					Roots:       roots,
					CurrentTime: now,
					KeyUsages:   []x509.ExtKeyUsage{c.usage},
				})
				if gotErr := err != nil; gotErr != c.wantErr {
					t.Errorf("Verify(name %q, usage %v): err = %v, want error %v", c.name, c.usage, err, c.wantErr)
				}
			}
		})
	}
}

func TestIssueUntrustedCA(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	kp, err := ca.Issue(CertSpec{CommonName: "x", Usage: ClientAuth}, now)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(other.Cert)
	_, err = parseCert(t, kp.CertPEM).Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err == nil {
		t.Error("certificate verified against a different CA")
	}
}

func TestIssueSubjectKeyAndValidity(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name string
		spec CertSpec
	}{
		{name: "user with groups", spec: CertSpec{CommonName: "alice", Organization: []string{"system:masters", "devs"}, Usage: ClientAuth}},
		{name: "component without groups", spec: CertSpec{CommonName: "system:kube-scheduler", Usage: ClientAuth}},
		{name: "server", spec: CertSpec{CommonName: "kube-apiserver", DNSNames: []string{"localhost"}, Usage: ServerAuth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ca.Issue(tt.spec, now)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			cert := parseCert(t, kp.CertPEM)

			if cert.Subject.CommonName != tt.spec.CommonName {
				t.Errorf("Subject.CommonName = %q, want %q", cert.Subject.CommonName, tt.spec.CommonName)
			}
			// DER sorts the values of one RDN (a SET OF), so order is not kept;
			// Kubernetes treats the organizations as a set of groups anyway.
			if got, want := sorted(cert.Subject.Organization), sorted(tt.spec.Organization); !reflect.DeepEqual(got, want) {
				t.Errorf("Subject.Organization = %q, want %q (any order)", got, want)
			}
			if cert.IsCA {
				t.Error("leaf certificate is a CA")
			}
			if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("not signed by the CA: %v", err)
			}

			key := parseKey(t, kp.KeyPEM)
			if _, ok := key.(*ecdsa.PrivateKey); !ok {
				t.Errorf("key is %T, want *ecdsa.PrivateKey", key)
			}
			if !samePublicKey(t, key.Public(), cert.PublicKey) {
				t.Error("private key does not match the certificate's public key")
			}
			if samePublicKey(t, key.Public(), ca.Cert.PublicKey) {
				t.Error("leaf reuses the CA key")
			}

			if !cert.NotBefore.Before(now) {
				t.Errorf("NotBefore = %v, want backdated before %v", cert.NotBefore, now)
			}
			if !cert.NotAfter.After(now) {
				t.Errorf("NotAfter = %v, want after %v", cert.NotAfter, now)
			}
			// The leaf must not outlive its CA, or clients reject it early.
			if cert.NotAfter.After(ca.Cert.NotAfter) {
				t.Errorf("leaf NotAfter %v is after CA NotAfter %v", cert.NotAfter, ca.Cert.NotAfter)
			}
		})
	}
}

func TestIssueUniqueSerials(t *testing.T) {
	ca := newTestCA(t)
	seen := map[string]bool{ca.Cert.SerialNumber.String(): true}
	for i := 0; i < 5; i++ {
		kp, err := ca.Issue(CertSpec{CommonName: "x", Usage: ClientAuth}, now)
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		s := parseCert(t, kp.CertPEM).SerialNumber
		if s.Sign() <= 0 {
			t.Errorf("serial %v is not positive", s)
		}
		if seen[s.String()] {
			t.Errorf("serial %v issued twice", s)
		}
		seen[s.String()] = true
	}
}

func TestIssueRequiresUsage(t *testing.T) {
	ca := newTestCA(t)
	kp, err := ca.Issue(CertSpec{CommonName: "no-usage", DNSNames: []string{"localhost"}}, now)
	if err == nil {
		t.Fatal("Issue with Usage 0: want error, got nil")
	}
	if !strings.Contains(err.Error(), "usage") {
		t.Errorf("error %q does not mention usage", err)
	}
	if kp.CertPEM != nil || kp.KeyPEM != nil {
		t.Errorf("Issue returned a key pair along with the error: %+v", kp)
	}
}

func TestNewSigningKey(t *testing.T) {
	privPEM, pubPEM, err := NewSigningKey()
	if err != nil {
		t.Fatalf("NewSigningKey: %v", err)
	}
	priv := parseKey(t, privPEM)

	block, _ := pem.Decode(pubPEM)
	if block == nil {
		t.Fatal("no PEM block in public key")
	}
	if block.Type != "PUBLIC KEY" {
		t.Errorf("public key PEM type = %q, want PUBLIC KEY", block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatalf("parse PKIX public key: %v", err)
	}
	if !samePublicKey(t, priv.Public(), pub) {
		t.Error("public key does not match the private key")
	}

	privPEM2, _, err := NewSigningKey()
	if err != nil {
		t.Fatalf("second NewSigningKey: %v", err)
	}
	if string(privPEM2) == string(privPEM) {
		t.Error("two calls returned the same private key")
	}
}

func TestIssueValidity(t *testing.T) {
	ca := newTestCA(t)
	for _, tt := range []struct {
		validity time.Duration
		want     time.Time
	}{
		{0, now.Add(365 * 24 * time.Hour)},
		{2 * time.Hour, now.Add(2 * time.Hour)},
	} {
		kp, err := ca.Issue(CertSpec{CommonName: "x", Usage: ClientAuth, Validity: tt.validity}, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := parseCert(t, kp.CertPEM).NotAfter; !got.Equal(tt.want) {
			t.Errorf("validity %s: NotAfter = %v, want %v", tt.validity, got, tt.want)
		}
	}
}

// TestSpecOfReissuesAlike: a certificate issued again from SpecOf has the
// same subject, names, addresses and usages.
func TestSpecOfReissuesAlike(t *testing.T) {
	ca := newTestCA(t)
	for _, spec := range []CertSpec{
		{CommonName: "kube-apiserver", DNSNames: []string{"localhost", "kubernetes"}, IPs: []net.IP{net.ParseIP("127.0.0.1").To4(), net.ParseIP("10.96.0.1").To4()}, Usage: ServerAuth},
		{CommonName: "etcd", DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1").To4()}, Usage: ServerAuth | ClientAuth},
		{CommonName: "system:node:node-1", Organization: []string{"system:nodes"}, Usage: ClientAuth},
	} {
		kp, err := ca.Issue(spec, now)
		if err != nil {
			t.Fatal(err)
		}
		got := SpecOf(parseCert(t, kp.CertPEM))
		if !reflect.DeepEqual(got, spec) {
			t.Errorf("SpecOf = %+v, want %+v", got, spec)
		}
	}
}

func TestLoadCA(t *testing.T) {
	ca := newTestCA(t)
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	kp, err := loaded.Issue(CertSpec{CommonName: "x", Usage: ClientAuth}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := parseCert(t, kp.CertPEM).CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("issued by the loaded CA, not trusted by the original: %v", err)
	}

	other := newTestCA(t)
	otherKey, _ := other.KeyPEM()
	if _, err := LoadCA(ca.CertPEM(), otherKey); err == nil {
		t.Error("LoadCA with another CA's key succeeded")
	}
	if _, err := LoadCA(kp.CertPEM, kp.KeyPEM); err == nil {
		t.Error("LoadCA of a leaf succeeded")
	}
}
