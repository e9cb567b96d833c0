package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	ephemeraserver "github.com/ephemera-dev/ephemera/internal/server"
	"github.com/ephemera-dev/ephemera/test/testhost"
)

// TestAdvertise checks that clusters are reachable from another machine
// through the one advertised address: a CI runner (a test host in its own
// network namespace) uses a control-plane-only and a real-node cluster with
// their kubeconfigs, routed by TLS server name through the same port, and
// a kubeconfig of one cluster pointed at the other's name fails at TLS.
func TestAdvertise(t *testing.T) {
	h := newHarness(t)
	runner := testhost.New(t, "runner")
	// The runner reaches the host on its side of their link: that is the
	// address the host advertises.
	host := runner.HostSideAddr()
	adv := netip.AddrPortFrom(host, freeTCPPort(t, host))

	t.Run("bad input", func(t *testing.T) {
		h := h.with(t)
		r := h.run(context.Background(), "create", "cluster", "nowhere", "--real-nodes", "0", "--advertise-address", "192.0.2.77")
		if r.err == nil || !strings.Contains(r.stderr, "192.0.2.77 is not an address of this host") {
			t.Errorf("an address the host does not have: %s", r)
		}
		busy, err := net.Listen("tcp", netip.AddrPortFrom(host, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		r = h.run(context.Background(), "create", "cluster", "busy", "--real-nodes", "0", "--advertise-address", busy.Addr().String())
		if r.err == nil || !strings.Contains(r.stderr, "in use by another program") {
			t.Errorf("a port another program holds: %s", r)
		}
		if out := h.must("get", "clusters").stdout; strings.Contains(out, "nowhere") || strings.Contains(out, "busy") {
			t.Errorf("a refused create left a cluster:\n%s", out)
		}
	})

	h.must("create", "cluster", "adv-cp", "--real-nodes", "0", "--simulated-nodes", "1", "--advertise-address", adv.String(), "--domain", "ci.test")
	h.must("create", "cluster", "adv-node", "--advertise-address", adv.String(), "--domain", "ci.test")
	kubeconfigs := map[string][]byte{}
	for _, name := range []string{"adv-cp", "adv-node"} {
		kc := []byte(h.must("get", "kubeconfig", name).stdout)
		cfg, err := clientcmd.Load(kc)
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
		if c.Server != "https://"+adv.String() || c.TLSServerName != name+".ci.test" {
			t.Errorf("%s's kubeconfig: server %q, tls-server-name %q; want https://%s and %s.ci.test", name, c.Server, c.TLSServerName, adv, name)
		}
		kubeconfigs[name] = kc
	}

	// fromRunner returns a client of the cluster of kubeconfig whose
	// connections start in the runner's network namespace, with
	// serverName as the TLS server name when it is set.
	fromRunner := func(t *testing.T, kubeconfig []byte, serverName string) kubernetes.Interface {
		t.Helper()
		cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if serverName != "" {
			cfg.ServerName = serverName
		}
		cfg.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			var conn net.Conn
			err := runner.Do(func() (err error) {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, address)
				return err
			})
			return conn, err
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return client
	}
	t.Run("a runner on another machine uses each cluster through the one address", func(t *testing.T) {
		for name, kc := range kubeconfigs {
			nodes, err := fromRunner(t, kc, "").CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
			if err != nil {
				t.Errorf("%s from the runner: %v", name, err)
				continue
			}
			if len(nodes.Items) != 1 {
				t.Errorf("%s from the runner: %d nodes, want 1 (the cluster's own)", name, len(nodes.Items))
			}
		}
	})
	t.Run("one cluster's kubeconfig does not open another", func(t *testing.T) {
		_, err := fromRunner(t, kubeconfigs["adv-cp"], "adv-node.ci.test").CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("adv-cp's kubeconfig with adv-node's server name: %v; want a TLS failure (the router passes the connection to adv-node, whose certificate adv-cp's CA does not sign)", err)
		}
	})
	h.must("delete", "cluster", "adv-cp")
	h.must("delete", "cluster", "adv-node")

	t.Run("through serve: the server and a leased TestCluster from the runner", func(t *testing.T) {
		// A server of its own state dir, on a port of its own: the
		// routers of one port know the clusters of one server.
		h := newHarness(t)
		served := netip.AddrPortFrom(host, freeTCPPort(t, host))
		s := h.startServer("--runner-node=false", "--advertise-address", served.String(), "--domain", "srv.test")
		ctx := t.Context()
		if err := s.client.Create(ctx, template("bare", 0)); err != nil {
			t.Fatal(err)
		}
		tc := &v1alpha1.TestCluster{
			ObjectMeta: metav1.ObjectMeta{Name: "remote", Namespace: "default"},
			Spec:       v1alpha1.TestClusterSpec{TemplateRef: "bare", TTL: &metav1.Duration{Duration: time.Hour}},
		}
		if err := s.client.Create(ctx, tc); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := waitFor(wctx, func() (bool, string) {
			err := s.client.Get(ctx, client.ObjectKeyFromObject(tc), tc)
			return err == nil && tc.Status.Phase == v1alpha1.TestClusterReady, fmt.Sprintf("%v %+v", err, tc.Status)
		}); err != nil {
			t.Fatalf("TestCluster not Ready: %v", err)
		}
		secret := &corev1.Secret{}
		if err := s.client.Get(ctx, types.NamespacedName{Namespace: "default", Name: tc.Status.KubeconfigSecret}, secret); err != nil {
			t.Fatal(err)
		}
		server, err := os.ReadFile(ephemeraserver.NewLayout(h.stateDir).Kubeconfig())
		if err != nil {
			t.Fatal(err)
		}
		for what, kc := range map[string][]byte{"the leased TestCluster's Secret": secret.Data["kubeconfig"], "the server's kubeconfig": server} {
			cfg, err := clientcmd.Load(kc)
			if err != nil {
				t.Fatal(err)
			}
			if c := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]; c.Server != "https://"+served.String() || !strings.HasSuffix(c.TLSServerName, ".srv.test") {
				t.Errorf("%s: server %q, tls-server-name %q; want https://%s and NAME.srv.test", what, c.Server, c.TLSServerName, served)
			}
			if _, err := fromRunner(t, kc, "").CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
				t.Errorf("%s from the runner: %v", what, err)
			}
		}
	})
}

// freeTCPPort returns a port free on addr.
func freeTCPPort(t *testing.T, addr netip.Addr) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return netip.MustParseAddrPort(l.Addr().String()).Port()
}
