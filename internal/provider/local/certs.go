package local

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/pki"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// RenewCertificates re-issues a cluster's leaf certificates when any of
// them expires within `within` (or has expired): every certificate in its
// pki dir but the CAs, and the client certificates the kubeconfigs in its
// dir embed, each for the same subject, names and usages, from the same
// CA. The CAs and the service account key stay, so whatever trusted the
// cluster (kubeconfigs handed out, tokens) still does. A cluster created
// before the etcd CA's key was kept gets a new etcd CA; only etcd and the
// API server trust it.
//
// It only writes files: the processes of a running cluster go on with the
// certificates they loaded until the caller restarts the cluster (Stop,
// then Restart). It reports whether it renewed. It returns
// provider.ErrNotFound for an unknown cluster, and an error when a create
// or restart of the cluster is under way.
func (p *Provider) RenewCertificates(_ context.Context, name string, within time.Duration) (renewed bool, err error) {
	notFound := fmt.Errorf("renew certificates of cluster %q: %w", name, provider.ErrNotFound)
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return false, notFound
	}
	dir := p.clusterDir(name)
	if _, err := os.Stat(filepath.Join(dir, clusterFile)); errors.Is(err, os.ErrNotExist) {
		return false, notFound
	}
	lock, err := flock.TryLock(filepath.Join(dir, createLock))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, notFound
		}
		return false, fmt.Errorf("renew certificates of cluster %q: another command is creating or restarting it: %w", name, err)
	}
	defer lock.Unlock()
	defer func() {
		if err != nil {
			err = fmt.Errorf("renew certificates of cluster %q: %w", name, err)
		}
	}()

	now := p.now()
	leaves, err := readLeaves(dir)
	if err != nil {
		return false, err
	}
	if !slices.ContainsFunc(leaves, func(l leaf) bool { return !l.cert.NotAfter.After(now.Add(within)) }) {
		return false, nil
	}
	cas, err := loadCAs(dir, now)
	if err != nil {
		return false, err
	}
	for _, l := range leaves {
		ca := issuerOf(l.cert, cas)
		if ca == nil {
			return false, fmt.Errorf("%s: issued by none of the cluster's CAs", l.where)
		}
		spec := pki.SpecOf(l.cert)
		spec.Validity = p.leafValidity
		kp, err := ca.Issue(spec, now)
		if err != nil {
			return false, err
		}
		if err := l.replace(kp); err != nil {
			return false, fmt.Errorf("%s: %w", l.where, err)
		}
	}
	return true, nil
}

// leaf is one leaf certificate of a cluster and how to replace it.
type leaf struct {
	where   string
	cert    *x509.Certificate
	replace func(pki.KeyPair) error
}

// readLeaves finds the leaf certificates of the cluster in dir: the .crt
// files of its pki dir that are not CAs (with the .key beside them), and
// the client certificates of the kubeconfigs in dir.
func readLeaves(dir string) ([]leaf, error) {
	var leaves []leaf
	pkiPath := filepath.Join(dir, pkiDir)
	crts, err := filepath.Glob(filepath.Join(pkiPath, "*.crt"))
	if err != nil {
		return nil, err
	}
	for _, crt := range crts {
		b, err := os.ReadFile(crt)
		if err != nil {
			return nil, err
		}
		cert, err := pki.ParseCert(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", crt, err)
		}
		if cert.IsCA {
			continue
		}
		key := strings.TrimSuffix(crt, ".crt") + ".key"
		leaves = append(leaves, leaf{where: crt, cert: cert, replace: func(kp pki.KeyPair) error {
			if err := writeFileAtomic(key, kp.KeyPEM, 0o600); err != nil {
				return err
			}
			return writeFileAtomic(crt, kp.CertPEM, 0o600)
		}})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() || (e.Name() != kubeconfigFile && !strings.HasSuffix(e.Name(), ".kubeconfig")) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		cfg, err := clientcmd.LoadFromFile(path)
		if err != nil {
			return nil, err
		}
		for user, auth := range cfg.AuthInfos {
			if len(auth.ClientCertificateData) == 0 {
				continue
			}
			cert, err := pki.ParseCert(auth.ClientCertificateData)
			if err != nil {
				return nil, fmt.Errorf("%s user %s: %w", path, user, err)
			}
			leaves = append(leaves, leaf{where: path, cert: cert, replace: func(kp pki.KeyPair) error {
				// Read again: the file may hold several users.
				cfg, err := clientcmd.LoadFromFile(path)
				if err != nil {
					return err
				}
				cfg.AuthInfos[user].ClientCertificateData = kp.CertPEM
				cfg.AuthInfos[user].ClientKeyData = kp.KeyPEM
				b, err := clientcmd.Write(*cfg)
				if err != nil {
					return err
				}
				return writeFileAtomic(path, b, 0o600)
			}})
		}
	}
	return leaves, nil
}

// authority issues again what a CA of the cluster issued.
type authority struct {
	// issued is the CA certificate that signed the old certificates.
	issued *x509.Certificate
	// ca signs their replacements: the same CA, or a new etcd CA.
	ca *pki.CA
}

// loadCAs reads the cluster CA and the etcd CA of the cluster in dir. When
// the etcd CA's key was not kept (clusters created before it was), it makes
// a new etcd CA, writes it in place of the old one and issues what the old
// one issued.
func loadCAs(dir string, now time.Time) ([]authority, error) {
	read := func(base string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, pkiDir, base)) }
	load := func(base string) (*pki.CA, error) {
		crt, err := read(base + ".crt")
		if err != nil {
			return nil, err
		}
		key, err := read(base + ".key")
		if err != nil {
			return nil, err
		}
		return pki.LoadCA(crt, key)
	}
	ca, err := load("ca")
	if err != nil {
		return nil, fmt.Errorf("load the cluster CA: %w", err)
	}
	cas := []authority{{ca.Cert, ca}}
	// Clusters created before aggregation was set up have no front proxy.
	switch fp, err := load("front-proxy-ca"); {
	case err == nil:
		cas = append(cas, authority{fp.Cert, fp})
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("load the front proxy's CA: %w", err)
	}
	etcdCA, err := load("etcd-ca")
	if err == nil {
		return append(cas, authority{etcdCA.Cert, etcdCA}), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load the etcd CA: %w", err)
	}
	oldPEM, err := read("etcd-ca.crt")
	if err != nil {
		return nil, err
	}
	old, err := pki.ParseCert(oldPEM)
	if err != nil {
		return nil, err
	}
	if etcdCA, err = pki.NewCA(old.Subject.CommonName, now); err != nil {
		return nil, err
	}
	keyPEM, err := etcdCA.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, pkiDir, "etcd-ca.key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, pkiDir, "etcd-ca.crt"), etcdCA.CertPEM(), 0o600); err != nil {
		return nil, err
	}
	return append(cas, authority{old, etcdCA}), nil
}

// issuerOf returns the CA that issues cert again: the one that signed it,
// else the one of its issuer's name (a certificate of the replaced etcd CA
// that a renewal that failed halfway left), else nil.
func issuerOf(cert *x509.Certificate, as []authority) *pki.CA {
	for _, a := range as {
		if cert.CheckSignatureFrom(a.issued) == nil {
			return a.ca
		}
	}
	for _, a := range as {
		if cert.Issuer.CommonName == a.ca.Cert.Subject.CommonName {
			return a.ca
		}
	}
	return nil
}
