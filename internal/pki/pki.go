package pki

import (
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Validity periods. Clusters are short-lived; a year leaves room for held ones.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// backdate absorbs clock skew between the host and anything verifying.
	backdate = time.Hour
)

// Usage says what a leaf certificate is for.
type Usage int

// Usages of leaf certificates.
const (
	// ServerAuth is a TLS serving certificate.
	ServerAuth Usage = 1 << iota
	// ClientAuth is a TLS client certificate.
	ClientAuth
)

// CA is a certificate authority: a self-signed certificate and its key.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key signs what the CA issues.
	Key crypto.Signer
}

// NewCA creates a self-signed CA named commonName.
func NewCA(commonName string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// CertSpec describes a leaf certificate.
type CertSpec struct {
	// CommonName is the subject CN; Kubernetes reads it as the user name.
	CommonName string
	// Organization is the subject O; Kubernetes reads it as the groups.
	Organization []string
	// DNSNames are DNS subject alternative names of a server.
	DNSNames []string
	// IPs are IP subject alternative names of a server.
	IPs []net.IP
	// Usage is ServerAuth, ClientAuth or both.
	Usage Usage
	// Validity is how long the certificate is valid from now; zero means
	// a year.
	Validity time.Duration
}

// KeyPair is a PEM-encoded certificate and private key.
type KeyPair struct {
	// CertPEM is the certificate.
	CertPEM []byte
	// KeyPEM is its PKCS#8 private key.
	KeyPEM []byte
}

// Issue creates a key and a certificate for spec signed by the CA.
func (ca *CA) Issue(spec CertSpec, now time.Time) (KeyPair, error) {
	if spec.Usage == 0 {
		return KeyPair{}, errors.New("certificate usage is required")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key for %q: %w", spec.CommonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return KeyPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(cmp.Or(spec.Validity, leafValidity)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	if spec.Usage&ServerAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.Usage&ClientAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("sign certificate for %q: %w", spec.CommonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{CertPEM: EncodeCert(der), KeyPEM: keyPEM}, nil
}

// SpecOf returns the spec a leaf certificate was issued for, so that it can
// be issued again alike: same subject, names, addresses and usages.
func SpecOf(cert *x509.Certificate) CertSpec {
	spec := CertSpec{
		CommonName:   cert.Subject.CommonName,
		Organization: cert.Subject.Organization,
		DNSNames:     cert.DNSNames,
		IPs:          cert.IPAddresses,
	}
	for _, u := range cert.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			spec.Usage |= ServerAuth
		case x509.ExtKeyUsageClientAuth:
			spec.Usage |= ClientAuth
		}
	}
	return spec
}

// LoadCA reads a CA from its PEM certificate and PEM private key.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", cert.Subject.CommonName)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key is a %T, not a signer", key)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("key does not match CA %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: signer}, nil
}

// ParseCert decodes the first PEM certificate in data.
func ParseCert(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM certificate")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return EncodeCert(ca.Cert.Raw) }

// KeyPEM returns the CA key in PEM.
func (ca *CA) KeyPEM() ([]byte, error) { return encodeKey(ca.Key) }

// NewSigningKey returns a PEM private key and its PEM public key, used to
// sign and verify service account tokens.
func NewSigningKey() (private, public []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate signing key: %w", err)
	}
	private, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, err
	}
	return private, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// EncodeCert PEM-encodes a DER certificate.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}
