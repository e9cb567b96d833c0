package local

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
)

// controlPlaneOptions returns options for a provider whose clusters are
// supervised by this test binary (see TestMain), with the installed default
// Kubernetes version, or skips the test when it is not installed.
func controlPlaneOptions(t *testing.T) Options {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a cluster")
	}
	cacheDir, err := kube.DefaultCacheDir()
	if err != nil {
		t.Skip(err)
	}
	cache := kube.Cache{Dir: cacheDir}
	if _, err := cache.Get(kube.DefaultVersion); err != nil {
		t.Skipf("needs Kubernetes %s installed: %v", kube.DefaultVersion, err)
	}
	return Options{StateDir: t.TempDir(), Cache: cache, Supervisor: []string{os.Args[0], testSupervisorArg}}
}

// TestRenewAndRestartDurable creates a control-plane-only cluster with
// certificates valid for 2 hours and etcd without fsync, as a management
// plane made by an older ephemera would be. A durable provider then renews
// its certificates and restarts it: the API answers with the new serving
// certificate (valid a year), both the old admin kubeconfig and the new one
// work, the data is still there, and etcd now syncs to disk.
func TestRenewAndRestartDurable(t *testing.T) {
	opts := controlPlaneOptions(t)
	ctx := t.Context()
	const name = "renew"
	old := New(opts)
	old.leafValidity = 2 * time.Hour
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := old.Delete(ctx, name); err != nil {
			t.Errorf("cleanup: delete: %v", err)
		}
	})
	zero := int32(0)
	spec := v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: &zero, Simulated: &zero}}
	if _, err := lifecycle.Create(ctx, old, name, spec, lifecycle.CreateOptions{Wait: realNodeWait}); err != nil {
		t.Fatalf("create: %v", err)
	}
	dir := old.clusterDir(name)
	if !slices.Contains(etcdArgs(t, dir), unsafeNoFsync) {
		t.Fatalf("etcd of a provider that is not durable runs without %s", unsafeNoFsync)
	}
	oldKubeconfig, err := old.Kubeconfig(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	before := servingCert(t, dir, oldKubeconfig)
	if _, err := clientOf(t, oldKubeconfig).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kept"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	opts.Durable = true
	p := New(opts)
	if renewed, err := p.RenewCertificates(ctx, name, time.Hour); err != nil || renewed {
		t.Fatalf("RenewCertificates within 1h of certificates valid 2h = %v, %v; want nothing done", renewed, err)
	}
	if renewed, err := p.RenewCertificates(ctx, name, 3*time.Hour); err != nil || !renewed {
		t.Fatalf("RenewCertificates within 3h = %v, %v; want renewed", renewed, err)
	}
	if err := p.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := p.Restart(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := lifecycle.Adopt(ctx, p, name, lifecycle.CreateOptions{Wait: realNodeWait}); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, logsDir, "supervisor.log"))
		t.Fatalf("after the restart: %v\nsupervisor log:\n%s", err, log)
	}

	newKubeconfig, err := p.Kubeconfig(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	after := servingCert(t, dir, newKubeconfig)
	if !after.NotAfter.After(before.NotAfter.Add(300*24*time.Hour)) || after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Errorf("API server serves a certificate valid until %v (serial %v); before %v (serial %v): not renewed", after.NotAfter, after.SerialNumber, before.NotAfter, before.SerialNumber)
	}
	for what, kc := range map[string][]byte{"old": oldKubeconfig, "new": newKubeconfig} {
		if _, err := clientOf(t, kc).CoreV1().Namespaces().Get(ctx, "kept", metav1.GetOptions{}); err != nil {
			t.Errorf("with the %s admin kubeconfig: %v", what, err)
		}
	}
	if slices.Contains(etcdArgs(t, dir), unsafeNoFsync) {
		t.Errorf("etcd of a durable provider's restarted cluster runs with %s", unsafeNoFsync)
	}
}

// etcdArgs returns the command line of the cluster's running etcd.
func etcdArgs(t *testing.T, dir string) []string {
	t.Helper()
	for _, pid := range processesOf(dir) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(args[0]) == kube.Etcd {
			return args
		}
	}
	t.Fatal("no etcd process")
	return nil
}

// servingCert returns the certificate the API server serves, checked
// against the cluster CA.
func servingCert(t *testing.T, dir string, kubeconfig []byte) *x509.Certificate {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, pkiDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: roots, ServerName: u.Hostname()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func clientOf(t *testing.T, kubeconfig []byte) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}
