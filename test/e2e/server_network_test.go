package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/test/testhost"
)

// TestServerNetwork checks that a template's network section reaches the
// clusters `ephemera serve` builds, over serve's own defaults: a
// TestCluster from a real-node template with dnsUpstream, domain and a
// port with hostPort 0 shows its ingress address (in serve's
// --lb-network), its domain (the template's, not serve's --domain) and
// its host port in status; its LoadBalancer Service answers from the host
// on the ingress address and through the host port; its DNS forwarder
// asks the template's resolver (not serve's --dns-upstream) and answers
// the domain's names. A pool of a template with a fixed host port, which
// its clusters could not share, is refused with a condition that says so,
// and builds nothing.
func TestServerNetwork(t *testing.T) {
	h := newHarness(t)
	const name = "web.example.test"
	templateDNS := testhost.ServeLoopbackDNS(t, netip.MustParseAddr("127.0.0.154"), map[string]netip.Addr{name: netip.MustParseAddr("192.0.2.154")})
	serveDNS := testhost.ServeLoopbackDNS(t, netip.MustParseAddr("127.0.0.155"), map[string]netip.Addr{name: netip.MustParseAddr("192.0.2.155")})
	lbNetwork := netip.MustParsePrefix("10.252.0.0/16")
	s := h.startServer("--runner-node=false", "--max-clusters", "4", "--lb-network", lbNetwork.String(),
		"--domain", "serve.test", "--dns-upstream", serveDNS.Addr().String())
	ctx := t.Context()
	c := s.client

	web := template("web", 0)
	web.Spec.Nodes.Real = ptr(int32(1))
	web.Spec.Network = v1alpha1.NetworkSpec{
		DNSUpstream: []string{templateDNS.Addr().String()},
		Domain:      "ci.test",
		Ports:       []v1alpha1.PortMapping{{HostPort: 0, Port: 80}},
	}
	fixed := template("fixed", 0)
	fixed.Spec.Nodes.Real = ptr(int32(1))
	fixed.Spec.Network.Ports = []v1alpha1.PortMapping{{HostPort: 18080, Port: 80}}
	tc := &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "pr-7", Namespace: "default"},
		Spec:       v1alpha1.TestClusterSpec{TemplateRef: "web", TTL: &metav1.Duration{Duration: time.Hour}},
	}
	for _, obj := range []client.Object{web, fixed, tc, pool("fixed", "fixed", 1, 2)} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a pool of a fixed host port is refused", func(t *testing.T) {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		p := &v1alpha1.ClusterPool{}
		if err := waitFor(pctx, func() (bool, string) {
			if err := c.Get(pctx, types.NamespacedName{Namespace: "default", Name: "fixed"}, p); err != nil {
				return false, err.Error()
			}
			cond := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
			return cond != nil && cond.Reason == v1alpha1.ReasonInvalidSpec, fmt.Sprintf("conditions %+v", p.Status.Conditions)
		}); err != nil {
			t.Fatalf("pool fixed: %v", err)
		}
		msg := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady).Message
		for _, want := range []string{"fixed host port 18080", "spec.network.ports[0].hostPort", "set hostPort 0"} {
			if !strings.Contains(msg, want) {
				t.Errorf("pool condition %q does not say %q", msg, want)
			}
		}
		if got := h.with(t).poolClusters("fixed"); len(got) > 0 {
			t.Errorf("pool fixed built clusters %v", got)
		}
	})

	ready := s.waitTC(ctx, t, "default", "pr-7", 4*time.Minute, func(tc *v1alpha1.TestCluster) bool {
		return tc.Status.Phase == v1alpha1.TestClusterReady
	})
	cluster := ready.Spec.ClusterName
	in := ready.Status.Ingress
	if in == nil {
		t.Fatalf("TestCluster pr-7 is Ready without status.ingress: %+v", ready.Status)
	}
	ingress, err := netip.ParseAddr(in.Address)
	if err != nil || !lbNetwork.Contains(ingress) {
		t.Errorf("status.ingress.address %q, want an address of serve's --lb-network %s", in.Address, lbNetwork)
	}
	if want := cluster + ".ci.test"; in.Domain != want {
		t.Errorf("status.ingress.domain %q, want %q (the template's domain over serve's --domain)", in.Domain, want)
	}
	ports := ready.Status.Ports
	if len(ports) != 1 || ports[0].HostPort == 0 || ports[0].Port != 80 || ports[0].Address != "127.0.0.1" {
		t.Fatalf("status.ports %+v, want 127.0.0.1:<picked>:80", ports)
	}

	t.Run("LoadBalancer from the host on the ingress address and the host port", func(t *testing.T) {
		h := h.with(t)
		h.must("load", "image", hello.archiveFor(t), "--cluster", cluster)
		manifest := filepath.Join(t.TempDir(), "web.yaml")
		if err := os.WriteFile(manifest, []byte(helloLB), 0o644); err != nil {
			t.Fatal(err)
		}
		h.mustKubectl(cluster, "apply", "-f", manifest)
		h.mustKubectl(cluster, "rollout", "status", "deployment/web", "--timeout=60s")
		if got := h.waitLBAddress(cluster, "web"); got != in.Address {
			t.Errorf("the LoadBalancer Service got %s, want the ingress address %s", got, in.Address)
		}
		hc := &http.Client{Timeout: 5 * time.Second}
		if _, body := httpGet(t, hc, "http://"+in.Address+"/", ""); !strings.Contains(body, "hello from web-") {
			t.Errorf("GET the ingress address %s from the host: %q", in.Address, body)
		}
		if _, body := httpGet(t, hc, fmt.Sprintf("http://127.0.0.1:%d/", ports[0].HostPort), ""); !strings.Contains(body, "hello from web-") {
			t.Errorf("GET the host port %d: %q", ports[0].HostPort, body)
		}
	})
	t.Run("DNS: the template's upstream and domain", func(t *testing.T) {
		forwarder := hostEnd(t, ready.Status.Endpoint)
		if got := lookup(t, forwarder, name); got != "192.0.2.154" {
			t.Errorf("%s through the forwarder = %q, want 192.0.2.154 from the template's dnsUpstream (serve's says 192.0.2.155)", name, got)
		}
		if templateDNS.Queries() == 0 || serveDNS.Queries() > 0 {
			t.Errorf("queries: template's resolver %d, serve's %d; want only the template's asked", templateDNS.Queries(), serveDNS.Queries())
		}
		if got := lookup(t, forwarder, "app."+in.Domain); got != in.Address {
			t.Errorf("app.%s through the forwarder = %q, want the ingress address %s", in.Domain, got, in.Address)
		}
	})
}
