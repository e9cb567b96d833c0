package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// clusterView is the part of `get clusters -o json` the tests read.
type clusterView struct {
	Name              string            `json:"name"`
	Phase             string            `json:"phase"`
	Message           string            `json:"message"`
	KubernetesVersion string            `json:"kubernetesVersion"`
	Endpoint          string            `json:"endpoint"`
	SimulatedNodes    int               `json:"simulatedNodes"`
	Labels            map[string]string `json:"labels"`
	Components        []struct {
		Name     string `json:"name"`
		Ready    bool   `json:"ready"`
		Restarts int    `json:"restarts"`
	} `json:"components"`
}

func (h *harness) clusters() map[string]clusterView {
	h.t.Helper()
	r := h.must("get", "clusters", "-o", "json")
	var cs []clusterView
	if err := json.Unmarshal([]byte(r.stdout), &cs); err != nil {
		h.t.Fatalf("parse get clusters -o json: %v\n%s", err, r.stdout)
	}
	out := map[string]clusterView{}
	for _, c := range cs {
		out[c.Name] = c
	}
	return out
}

// kubectl runs the installed kubectl of version against a cluster.
func (h *harness) kubectl(version, cluster string, args ...string) (string, error) {
	h.t.Helper()
	cmd := h.kubectlCommand(context.Background(), version, cluster, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := runTracked(cmd)
	return out.String(), err
}

// kubectlCommand returns the installed kubectl of version with args, set
// up to use the cluster's admin kubeconfig.
func (h *harness) kubectlCommand(ctx context.Context, version, cluster string, args ...string) *osexec.Cmd {
	h.t.Helper()
	kc := filepath.Join(h.t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(h.must("get", "kubeconfig", cluster).stdout), 0o600); err != nil {
		h.t.Fatal(err)
	}
	bin := strings.TrimSpace(h.must("kube", "path", "kubectl", "--version", version).stdout)
	return osexec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kc}, args...)...)
}

// clusterPorts reads the ports a cluster was given from its plan.
func (h *harness) clusterPorts(name string) []int {
	h.t.Helper()
	var ports []int
	for _, p := range h.planPorts(name) {
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		h.t.Fatal("cluster plan lists no ports")
	}
	return ports
}

// planPorts reads the ports of a cluster's plan, by name.
func (h *harness) planPorts(name string) map[string]int {
	h.t.Helper()
	var plan struct {
		Ports map[string]int `json:"ports"`
	}
	b, err := os.ReadFile(filepath.Join(h.clusterDir(name), "cluster.json"))
	if err != nil {
		h.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &plan); err != nil {
		h.t.Fatal(err)
	}
	return plan.Ports
}

// assertPortsFree checks that nothing listens on, or holds a connection
// on, any of the ports. Connections in TIME_WAIT are kernel state that
// outlives every process by design; the allocator skips such ports.
func assertPortsFree(t *testing.T, ports []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		busy := socketsOn(ports)
		if len(busy) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("ports still held after delete:\n%s", strings.Join(busy, "\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// socketsOn lists IPv4 TCP sockets bound to one of the ports in any state
// but TIME_WAIT, from /proc/net/tcp.
func socketsOn(ports []int) []string {
	want := map[string]bool{}
	for _, p := range ports {
		want[fmt.Sprintf("%04X", p)] = true
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return []string{err.Error()}
	}
	const timeWait = "06"
	var busy []string
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		local := f[1]
		port := local[strings.IndexByte(local, ':')+1:]
		if want[port] && f[3] != timeWait {
			busy = append(busy, line)
		}
	}
	return busy
}

func TestCreateUseDelete(t *testing.T) {
	h := newHarness(t)
	r := h.must("create", "cluster", "demo", "--simulated-nodes", "3")
	if r.stdout != "" {
		t.Errorf("create wrote to stdout (progress belongs on stderr): %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "is ready") {
		t.Errorf("create did not report readiness on stderr:\n%s", r.stderr)
	}

	c := h.clusters()["demo"]
	if c.Phase != "Running" || c.SimulatedNodes != 3 || c.KubernetesVersion != newVersion {
		t.Fatalf("get clusters: got %+v, want Running with 3 nodes on %s", c, newVersion)
	}

	out, err := h.kubectl(newVersion, "demo", "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
	if err != nil {
		t.Fatalf("kubectl get nodes: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(out), "sim-1=True sim-2=True sim-3=True"; got != want {
		t.Errorf("nodes: got %q, want %q", got, want)
	}
	if out, err := h.kubectl(newVersion, "demo", "version", "-o", "json"); err != nil || !strings.Contains(out, `"gitVersion": "`+newVersion+`"`) {
		t.Errorf("kubectl version does not report server %s: %v\n%s", newVersion, err, out)
	}

	for _, args := range [][]string{
		{"create", "deployment", "web", "--image=registry.k8s.io/pause:3.10", "--replicas=3"},
		{"wait", "deployment/web", "--for=condition=Available", "--timeout=60s"},
	} {
		if out, err := h.kubectl(newVersion, "demo", args...); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	out, err = h.kubectl(newVersion, "demo", "get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.status.phase}@{.spec.nodeName} {end}`)
	if err != nil {
		t.Fatalf("kubectl get pods: %v\n%s", err, out)
	}
	pods := strings.Fields(out)
	if len(pods) != 3 {
		t.Fatalf("want 3 pods, got %q", out)
	}
	for _, p := range pods {
		if !strings.HasPrefix(p, "Running@sim-") {
			t.Errorf("pod not Running on a simulated node: %s", p)
		}
	}

	for _, format := range []string{"yaml", "wide"} {
		r := h.must("get", "clusters", "-o", format)
		if format == "yaml" {
			var cs []clusterView
			if err := yaml.Unmarshal([]byte(r.stdout), &cs); err != nil || len(cs) != 1 {
				t.Errorf("get clusters -o yaml: %v\n%s", err, r.stdout)
			}
		} else if !strings.Contains(r.stdout, "ENDPOINT") || !strings.Contains(r.stdout, "demo") {
			t.Errorf("get clusters -o wide:\n%s", r.stdout)
		}
	}

	h.assertEtcdPeerPortClosed("demo")

	ports := h.clusterPorts("demo")
	h.must("delete", "cluster", "demo")
	h.assertNothingLeft()
	assertPortsFree(t, ports)

	r = h.must("delete", "cluster", "demo")
	if !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("second delete should say there was nothing to delete:\n%s", r.stderr)
	}
}

func TestTwoVersionsSideBySide(t *testing.T) {
	if err := installed(oldVersion); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	versions := map[string]string{"new": newVersion, "old": oldVersion}
	var wg sync.WaitGroup
	results := make(map[string]result, len(versions))
	var mu sync.Mutex
	for name, v := range versions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.run(context.Background(), "create", "cluster", name, "--kubernetes-version", v, "--simulated-nodes", "2")
			mu.Lock()
			results[name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	for name, r := range results {
		if r.err != nil {
			t.Fatalf("create %s: %s", name, r)
		}
	}
	cs := h.clusters()
	if cs["new"].Endpoint == cs["old"].Endpoint {
		t.Fatalf("both clusters got endpoint %s", cs["new"].Endpoint)
	}
	for name, v := range versions {
		if cs[name].Phase != "Running" || cs[name].KubernetesVersion != v {
			t.Errorf("%s: got %+v, want Running on %s", name, cs[name], v)
		}
		out, err := h.kubectl(v, name, "version", "-o", "json")
		if err != nil || !strings.Contains(out, `"gitVersion": "`+v+`"`) {
			t.Errorf("%s: server is not %s: %v\n%s", name, v, err, out)
		}
	}

	// Deleting one leaves the other untouched.
	h.must("delete", "cluster", "new")
	if procs := processesUnder(h.clusterDir("new")); len(procs) > 0 {
		t.Errorf("processes of deleted cluster left:\n%s", strings.Join(procs, "\n"))
	}
	if out, err := h.kubectl(oldVersion, "old", "create", "namespace", "still-here"); err != nil {
		t.Errorf("the other cluster stopped working after a delete: %v\n%s", err, out)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	h := newHarness(t)
	h.must("create", "cluster", "taken", "--wait", "0")
	files := map[string]string{
		"bad-yaml.yaml":    "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nspec: [nodes\n",
		"unknown.yaml":     "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata: {name: f}\nspec:\n  nodes:\n    simulatd: 3\n",
		"wrong-kind.yaml":  "apiVersion: v1\nkind: Pod\nmetadata: {name: f}\n",
		"empty.yaml":       "",
		"bad-version.yaml": "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata: {name: f}\nspec:\n  kubernetesVersion: v2.0.0\n",
	}
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	emptyCache := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"upper-case name", []string{"Bad_Name"}, `invalid cluster name "Bad_Name"`},
		{"name too long", []string{strings.Repeat("a", 41)}, "no more than 40 characters"},
		{"no name", []string{}, "a cluster name is required"},
		{"existing name", []string{"taken"}, `cluster already exists: "taken"`},
		{"unknown version", []string{"x", "--kubernetes-version", "v1.99.0"}, "supported minors are v1.33 to v1.36"},
		{"not a version", []string{"x", "--kubernetes-version", "latest"}, `invalid Kubernetes version "latest"`},
		{"not installed", []string{"x", "--cache-dir", emptyCache}, "run: ephemera kube install --version " + newVersion},
		{"negative nodes", []string{"x", "--simulated-nodes", "-1"}, "-1 simulated nodes: want 0 to 1000"},
		{"too many nodes", []string{"x", "--simulated-nodes", "5000"}, "5000 simulated nodes: want 0 to 1000"},
		{"nodes not a number", []string{"x", "--simulated-nodes", "three"}, `invalid argument "three"`},
		{"two real nodes", []string{"x", "--real-nodes", "2"}, "2 real nodes: the local provider runs 0 or 1"},
		{"bad host network", []string{"x", "--host-network", "10.250.0.0/31"}, "want an IPv4 CIDR of /30 or larger"},
		{"pod subnet in the host network", []string{"x", "--host-network", "10.244.0.0/16"}, "overlaps the host network 10.244.0.0/16"},
		{"negative wait", []string{"x", "--wait", "-5s"}, "must not be negative"},
		{"invalid YAML", []string{"-f", filepath.Join(dir, "bad-yaml.yaml")}, "invalid YAML"},
		{"unknown field", []string{"-f", filepath.Join(dir, "unknown.yaml")}, `unknown field "spec.nodes.simulatd"`},
		{"wrong kind", []string{"-f", filepath.Join(dir, "wrong-kind.yaml")}, `want apiVersion ephemera.dev/v1alpha1 and kind ClusterTemplate`},
		{"empty file", []string{"-f", filepath.Join(dir, "empty.yaml")}, "file is empty"},
		{"version in file", []string{"-f", filepath.Join(dir, "bad-version.yaml")}, `invalid Kubernetes version "v2.0.0"`},
		{"missing file", []string{"-f", filepath.Join(dir, "nope.yaml")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run(context.Background(), append([]string{"create", "cluster"}, tc.args...)...)
			if r.err == nil {
				t.Fatalf("create succeeded, want an error containing %q\n%s", tc.want, r)
			}
			if !strings.Contains(r.stderr, "ERROR: ") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, r.stderr)
			}
			entries, _ := os.ReadDir(filepath.Join(h.stateDir, "clusters"))
			if len(entries) != 1 || entries[0].Name() != "taken" {
				t.Errorf("bad input changed the state dir: %v", entries)
			}
		})
	}
	if c := h.clusters()["taken"]; c.Phase != "Running" && c.Phase != "Creating" {
		t.Errorf("the existing cluster was disturbed: %+v", c)
	}
}

// TestConcurrentCreatesOfOneName races several creates of the same name:
// exactly one wins, the others are told the name is taken, and the winner's
// cluster is whole.
func TestConcurrentCreatesOfOneName(t *testing.T) {
	h := newHarness(t)
	const n = 4
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.run(context.Background(), "create", "cluster", "same", "--wait", "0")
		}()
	}
	wg.Wait()
	won := 0
	for _, r := range results {
		switch {
		case r.err == nil:
			won++
		case !strings.Contains(r.stderr, `cluster already exists: "same"`):
			t.Errorf("a losing create failed for another reason:\n%s", r)
		}
	}
	if won != 1 {
		t.Fatalf("%d creates succeeded, want exactly 1", won)
	}
	if out, err := h.kubectl(newVersion, "same", "create", "namespace", "works"); err != nil {
		t.Errorf("the winning cluster does not work: %v\n%s", err, out)
	}
}
