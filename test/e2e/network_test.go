package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/test/testhost"
)

// clusterNet is what get clusters -o json says about a cluster's network.
type clusterNet struct {
	Endpoint string `json:"endpoint"`
	Ingress  *struct {
		Address string `json:"address"`
		Domain  string `json:"domain"`
	} `json:"ingress"`
	Ports []struct {
		Address  string `json:"address"`
		HostPort int    `json:"hostPort"`
		Port     int    `json:"port"`
	} `json:"ports"`
}

func (h *harness) clusterNet(name string) clusterNet {
	h.t.Helper()
	var cs []clusterNet
	if err := json.Unmarshal([]byte(h.must("get", "clusters", name, "-o", "json").stdout), &cs); err != nil || len(cs) != 1 {
		h.t.Fatalf("get clusters %s -o json: %v %v", name, cs, err)
	}
	return cs[0]
}

// helloLB is the hello app behind a LoadBalancer Service on port 80.
const helloLB = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: hello
        image: ` + helloImage + `
        args: [serve]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

// TestNetwork checks that a real-node cluster is a network citizen: its
// pods reach test hosts (the outside world, simulated) by address and by a
// name its DNS forwards to the test's resolver on the host's loopback, its
// LoadBalancer Services get addresses the host reaches, directly and
// through --port, its domain resolves through the forwarder, another
// cluster's pods cannot reach it, and egress still works when the host's
// forwarding policy is DROP. Deleting the clusters leaves nothing (the
// harness's host census: rules, routes, interfaces, processes).
func TestNetwork(t *testing.T) {
	h := newHarness(t)
	world := testhost.New(t, "world")
	web := world.ServeHTTP(t, 8080, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "hello from the world")
	}))
	resolver := testhost.ServeLoopbackDNS(t, netip.MustParseAddr("127.0.0.153"), map[string]netip.Addr{"web.example.test": world.Addr()})
	outsideDNS := world.ServeDNS(t, map[string]netip.Addr{"web.example.test": world.Addr()})

	h.must("create", "cluster", "net", "--port", "0:80", "--domain", "ci.test", "--dns-upstream", resolver.Addr().String())
	h.must("create", "cluster", "other", "--dns-upstream", outsideDNS.Addr().String())
	nc := h.clusterNet("net")
	if nc.Ingress == nil || !strings.HasPrefix(nc.Ingress.Address, "10.251.") || nc.Ingress.Domain != "net.ci.test" {
		t.Fatalf("ingress = %+v, want a 10.251.x.y address and domain net.ci.test", nc.Ingress)
	}
	if len(nc.Ports) != 1 || nc.Ports[0].HostPort == 0 || nc.Ports[0].Port != 80 {
		t.Fatalf("ports = %+v, want one mapping to port 80 with its host port picked", nc.Ports)
	}
	ingress := nc.Ingress.Address
	wide := h.must("get", "clusters", "net", "-o", "wide").stdout
	if !strings.Contains(wide, ingress) || !strings.Contains(wide, "net.ci.test") {
		t.Errorf("get clusters -o wide does not show the ingress address and domain:\n%s", wide)
	}

	t.Run("first pods reach a Service at once", func(t *testing.T) {
		h := h.with(t)
		h.deployHello("net")
		// 20 client pods that try once, started together right after
		// the Service.
		var pods strings.Builder
		for i := range 20 {
			fmt.Fprintf(&pods, `---
apiVersion: v1
kind: Pod
metadata: {name: once-%d, labels: {batch: once}}
spec:
  restartPolicy: Never
  containers:
  - {name: get, image: %s, args: [get, "http://hello.default.svc.cluster.local/", "0"]}
`, i, helloImage)
		}
		manifest := filepath.Join(t.TempDir(), "once.yaml")
		if err := os.WriteFile(manifest, []byte(pods.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		h.mustKubectl("net", "apply", "-f", manifest)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			phases := h.mustKubectl("net", "get", "pods", "-l", "batch=once", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase}{"\n"}{end}`)
			done, failed := 0, []string{}
			for _, line := range strings.Fields(phases) {
				name, phase, _ := strings.Cut(line, "=")
				switch phase {
				case "Succeeded":
					done++
				case "Failed":
					done++
					log, _ := h.kubectl(newVersion, "net", "logs", name)
					failed = append(failed, name+": "+log)
				}
			}
			if done == 20 {
				for _, f := range failed {
					t.Errorf("a single-shot client failed: %s", f)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("client pods not done after 2 minutes:\n%s", phases)
			}
			time.Sleep(250 * time.Millisecond)
		}
		h.mustKubectl("net", "delete", "pods", "-l", "batch=once", "--wait=false")
	})
	t.Run("egress by address and by name", func(t *testing.T) {
		h := h.with(t)
		phase, log := h.runPod("net", "by-ip", "get", web.URL()+"/")
		if phase != "Succeeded" || !strings.Contains(log, "hello from the world") {
			t.Errorf("pod by IP: %s %q", phase, log)
		}
		phase, log = h.runPod("net", "by-name", "get", "http://web.example.test:8080/")
		if phase != "Succeeded" || !strings.Contains(log, "hello from the world") {
			t.Errorf("pod by name through the loopback resolver: %s %q", phase, log)
		}
		if resolver.Queries() == 0 {
			t.Errorf("the host's loopback resolver was never asked")
		}
		for _, src := range web.Sources() {
			if src != world.HostSideAddr() {
				t.Errorf("the test host saw a request from %s, want the host's address %s (masqueraded)", src, world.HostSideAddr())
			}
		}
	})
	t.Run("LoadBalancer from the host through --port and by name", func(t *testing.T) {
		h := h.with(t)
		manifest := filepath.Join(t.TempDir(), "web.yaml")
		if err := os.WriteFile(manifest, []byte(helloLB), 0o644); err != nil {
			t.Fatal(err)
		}
		h.mustKubectl("net", "apply", "-f", manifest)
		h.mustKubectl("net", "rollout", "status", "deployment/web", "--timeout=60s")
		got := h.waitLBAddress("net", "web")
		if got != ingress {
			t.Errorf("the first LoadBalancer Service got %s, want the ingress address %s", got, ingress)
		}
		c := &http.Client{Timeout: 5 * time.Second}
		if _, body := httpGet(t, c, "http://"+ingress+"/", ""); !strings.Contains(body, "hello from web-") {
			t.Errorf("GET the ingress address from the host: %q", body)
		}
		if _, body := httpGet(t, c, fmt.Sprintf("http://127.0.0.1:%d/", nc.Ports[0].HostPort), ""); !strings.Contains(body, "hello from web-") {
			t.Errorf("GET through --port 0:80 (host port %d): %q", nc.Ports[0].HostPort, body)
		}
		forwarder := hostEnd(t, nc.Endpoint)
		if addr := lookup(t, forwarder, "app.net.ci.test"); addr != ingress {
			t.Errorf("app.net.ci.test through the forwarder at %s = %q, want %s", forwarder, addr, ingress)
		}
		// Deleting the Service releases the address: the next one gets it.
		h.mustKubectl("net", "delete", "service", "web")
		h.mustKubectl("net", "expose", "deployment", "web", "--name", "web2", "--type", "LoadBalancer", "--port", "80", "--target-port", "8080")
		if got := h.waitLBAddress("net", "web2"); got != ingress {
			t.Errorf("after the first Service went, the next got %s, want the released ingress address %s", got, ingress)
		}
	})
	t.Run("clusters cannot reach each other", func(t *testing.T) {
		h := h.with(t)
		h.must("load", "image", hello.archiveFor(t), "--cluster", "other")
		node := strings.TrimSuffix(strings.TrimPrefix(nc.Endpoint, "https://"), ":6443")
		for _, target := range []string{"http://" + ingress + "/", "http://" + node + ":10250/"} {
			phase, log := h.runPod("other", "reach", "get", target, "2s")
			if phase == "Succeeded" || strings.Contains(log, "hello from") {
				t.Errorf("a pod of another cluster reached %s: %s %q", target, phase, log)
			}
		}
		// Its own egress works, with its own upstream in a test host.
		if phase, log := h.runPod("other", "own", "get", "http://web.example.test:8080/"); phase != "Succeeded" {
			t.Errorf("other cluster's egress by name: %s %q", phase, log)
		}
	})
	t.Run("forwarding policy DROP", func(t *testing.T) {
		h := h.with(t)
		setForwardPolicy(t, "DROP")
		phase, log := h.runPod("net", "dropped", "get", web.URL()+"/")
		if phase != "Succeeded" || !strings.Contains(log, "hello from the world") {
			t.Errorf("egress with FORWARD policy DROP: %s %q", phase, log)
		}
	})
	h.must("delete", "cluster", "net")
	h.must("delete", "cluster", "other")
}

// waitLBAddress waits for a Service's LoadBalancer address.
func (h *harness) waitLBAddress(cluster, service string) string {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ip := h.mustKubectl(cluster, "get", "service", service, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
		if ip != "" {
			return ip
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("Service %s has no LoadBalancer address after 30s", service)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setForwardPolicy sets the host's FORWARD policy and restores it when the
// test ends, failed or not.
func setForwardPolicy(t *testing.T, policy string) {
	t.Helper()
	out, err := osexec.Command("iptables", "-S", "FORWARD").Output()
	if err != nil {
		t.Fatalf("iptables -S FORWARD: %v", err)
	}
	old := "ACCEPT"
	if strings.Contains(string(out), "-P FORWARD DROP") {
		old = "DROP"
	}
	t.Cleanup(func() {
		if out, err := osexec.Command("iptables", "-P", "FORWARD", old).CombinedOutput(); err != nil {
			t.Errorf("restore the FORWARD policy: %v\n%s", err, out)
		}
	})
	if out, err := osexec.Command("iptables", "-P", "FORWARD", policy).CombinedOutput(); err != nil {
		t.Fatalf("iptables -P FORWARD %s: %v\n%s", policy, err, out)
	}
}

// hostEnd returns the host end of a real-node cluster's link from its API
// endpoint (the node's address): the /30's first address.
func hostEnd(t *testing.T, endpoint string) string {
	t.Helper()
	host, _, err := net.SplitHostPort(strings.TrimPrefix(endpoint, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	node := netip.MustParseAddr(host)
	return node.Prev().String()
}

// lookup asks the DNS server at addr for name's A record.
func lookup(t *testing.T, server, name string) string {
	t.Helper()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(server, "53"))
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, name)
	if err != nil || len(addrs) == 0 {
		t.Errorf("look up %s at %s: %v", name, server, err)
		return ""
	}
	return addrs[0]
}

// TestNetworkBadInput: malformed or clashing network settings fail the
// create with an error that says what was wrong, and leave nothing.
func TestNetworkBadInput(t *testing.T) {
	h := newHarness(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"malformed --port", []string{"--port", "80x"}, "", "want [ADDR:]HOSTPORT:PORT"},
		{"port in use", []string{"--port", fmt.Sprintf("%d:80", busyPort)}, "", "is in use"},
		{"one host port twice", []string{"--port", "18080:80", "--port", "18080:81"}, "", "both bind host port"},
		{"LB network on the host's network", nil, "EPHEMERA_LB_NETWORK=127.0.0.0/8", "overlaps the host's network"},
		{"malformed --dns-upstream", []string{"--dns-upstream", "resolver.example"}, "", "want an IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := h.command(context.Background(), append([]string{"create", "cluster", "bad"}, tc.args...)...)
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("create cluster %v: want an error saying %q, got %v:\n%s", tc.args, tc.want, err, out)
			}
			if _, ok := h.clusters()["bad"]; ok {
				t.Errorf("a cluster was left after the refused create")
			}
		})
	}
}

// TestSimulatedLoadBalancer: in clusters of simulated nodes only,
// LoadBalancer Services get addresses in their status (nothing is routed
// there), each cluster from a /28 of the LB network of its own, taken from
// the top; deleting a cluster releases its range for the next one and
// leaves nothing on the host (the harness's census).
func TestSimulatedLoadBalancer(t *testing.T) {
	h := newHarness(t)
	create := func(name string) {
		h.must("create", "cluster", name, "--simulated-nodes", "1", "--lb-network", "10.253.0.0/24")
	}
	service := func(cluster, name string) string {
		h.mustKubectl(cluster, "create", "service", "loadbalancer", name, "--tcp=80:8080")
		return h.waitLBAddress(cluster, name)
	}
	create("sim-a")
	create("sim-b")
	for _, c := range []struct{ cluster, service, want string }{
		// The first Service takes the ingress address, the range's first.
		{"sim-a", "web", "10.253.0.241"},
		{"sim-a", "ssh", "10.253.0.242"},
		{"sim-b", "web", "10.253.0.225"},
	} {
		if got := service(c.cluster, c.service); got != c.want {
			t.Errorf("%s: Service %s got %s, want %s", c.cluster, c.service, got, c.want)
		}
	}
	h.must("delete", "cluster", "sim-a")
	create("sim-c")
	if got := service("sim-c", "web"); got != "10.253.0.241" {
		t.Errorf("sim-c: Service web got %s, want 10.253.0.241 (the range sim-a released)", got)
	}
	h.must("delete", "cluster", "sim-b", "sim-c")
}
