package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helloImage is the demo workload (examples/hello) as an image.
const helloImage = "example.com/hello:v1"

// hello is examples/hello as an image.
var hello = &exampleImage{pkg: "hello", tag: helloImage}

// helloApp is a Deployment of the hello server behind a Service.
const helloApp = `apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
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
metadata: {name: hello}
spec:
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080}]
`

// deployHello loads the hello image into a cluster and runs the app.
func (h *harness) deployHello(cluster string) {
	h.t.Helper()
	r := h.must("load", "image", hello.archiveFor(h.t), "--cluster", cluster)
	if !strings.Contains(r.stdout, "docker.io/"+helloImage) && !strings.Contains(r.stdout, helloImage) {
		h.t.Fatalf("load image did not report %s:\n%s", helloImage, r)
	}
	manifest := filepath.Join(h.t.TempDir(), "hello.yaml")
	if err := os.WriteFile(manifest, []byte(helloApp), 0o644); err != nil {
		h.t.Fatal(err)
	}
	h.mustKubectl(cluster, "apply", "-f", manifest)
	h.mustKubectl(cluster, "rollout", "status", "deployment/hello", "--timeout=60s")
}

func (h *harness) mustKubectl(cluster string, args ...string) string {
	h.t.Helper()
	out, err := h.kubectl(newVersion, cluster, args...)
	if err != nil {
		h.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runPod runs a hello pod to completion and returns its phase and log.
func (h *harness) runPod(cluster, name string, args ...string) (phase, log string) {
	h.t.Helper()
	h.mustKubectl(cluster, append([]string{"run", name, "--image=" + helloImage, "--restart=Never", "--"}, args...)...)
	deadline := time.Now().Add(90 * time.Second)
	for {
		phase = h.mustKubectl(cluster, "get", "pod", name, "-o", "jsonpath={.status.phase}")
		if phase == "Succeeded" || phase == "Failed" {
			break
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("pod %s still %q after 90s:\n%s", name, phase, h.mustKubectl(cluster, "describe", "pod", name))
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ = h.kubectl(newVersion, cluster, "logs", name)
	h.mustKubectl(cluster, "delete", "pod", name, "--wait=false")
	return phase, log
}

// TestRealNode runs a real workload on a default cluster (one real node):
// an image loaded from an archive, a Deployment behind a Service reached by
// ClusterIP and by DNS name from other pods, logs, exec and port-forward.
func TestRealNode(t *testing.T) {
	h := newHarness(t)
	r := h.must("create", "cluster", "app")
	if !strings.Contains(r.stderr, "1 real node") {
		t.Errorf("create does not say the cluster has a real node:\n%s", r.stderr)
	}
	c := h.clusters()["app"]
	if c.Phase != "Running" {
		t.Fatalf("phase = %s (%s)", c.Phase, c.Message)
	}
	// The API server listens in the cluster's own network namespace, at
	// the node's address from the host network.
	if !regexp.MustCompile(`^https://10\.250\.\d+\.\d+:6443$`).MatchString(c.Endpoint) {
		t.Errorf("endpoint = %q, want the node's address in 10.250.0.0/16", c.Endpoint)
	}
	nodes := h.mustKubectl("app", "get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.containerRuntimeVersion} {.status.addresses[0].address}{\"\\n\"}{end}")
	if !regexp.MustCompile(`^node-1 containerd://\S+ 10\.250\.\d+\.\d+\n$`).MatchString(nodes) {
		t.Errorf("nodes = %q, want node-1 on containerd at a 10.250.x.y address", nodes)
	}

	h.deployHello("app")
	t.Run("logs", func(t *testing.T) {
		h := h.with(t)
		if out := h.mustKubectl("app", "logs", "deployment/hello"); !strings.Contains(out, "listening on :8080") {
			t.Errorf("logs = %q", out)
		}
	})
	t.Run("service by DNS name", func(t *testing.T) {
		h := h.with(t)
		phase, log := h.runPod("app", "by-name", "get", "http://hello.default.svc.cluster.local/")
		if phase != "Succeeded" || !strings.Contains(log, "hello from hello-") {
			t.Errorf("pod %s, log %q", phase, log)
		}
	})
	t.Run("service by ClusterIP", func(t *testing.T) {
		h := h.with(t)
		ip := h.mustKubectl("app", "get", "service", "hello", "-o", "jsonpath={.spec.clusterIP}")
		phase, log := h.runPod("app", "by-ip", "get", "http://"+ip+"/")
		if phase != "Succeeded" || !strings.Contains(log, "hello from hello-") {
			t.Errorf("pod %s, log %q", phase, log)
		}
	})
	t.Run("exec", func(t *testing.T) {
		h := h.with(t)
		h.mustKubectl("app", "run", "shell", "--image="+helloImage, "--restart=Never", "--", "sleep")
		h.mustKubectl("app", "wait", "--for=condition=Ready", "pod/shell", "--timeout=60s")
		if out := h.mustKubectl("app", "exec", "shell", "--", "/hello", "get", "http://hello/"); !strings.Contains(out, "hello from hello-") {
			t.Errorf("exec output = %q", out)
		}
	})
	t.Run("port-forward", func(t *testing.T) {
		h := h.with(t)
		body := h.portForwardGet("app", "service/hello", 80)
		if !strings.Contains(body, "hello from hello-") {
			t.Errorf("GET through port-forward = %q", body)
		}
	})
	t.Run("bad image archives", func(t *testing.T) {
		h := h.with(t)
		dir := t.TempDir()
		garbage := filepath.Join(dir, "garbage.tar")
		empty := filepath.Join(dir, "empty.tar")
		_ = os.WriteFile(garbage, []byte("this is not a tar file at all, not even close"), 0o644)
		_ = os.WriteFile(empty, nil, 0o644)
		// A tar, but of no image.
		notImage := filepath.Join(dir, "files.tar")
		if out, err := osexec.Command("tar", "-cf", notImage, "-C", dir, "garbage.tar").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
		for _, tc := range []struct{ file, want string }{
			{garbage, "not a tar archive"},
			{notImage, "not an image archive"},
			{empty, "empty"},
			{filepath.Join(dir, "missing.tar"), "no such file"},
		} {
			r := h.run(context.Background(), "load", "image", tc.file, "--cluster", "app")
			if r.err == nil || !strings.Contains(r.stderr, tc.file) || !strings.Contains(strings.ToLower(r.stderr), tc.want) {
				t.Errorf("load image %s: want an error naming the file and %q, got: %s", filepath.Base(tc.file), tc.want, r)
			}
		}
		if r := h.run(context.Background(), "load", "image", hello.archiveFor(t), "--cluster", "nope"); r.err == nil || !strings.Contains(r.stderr, `"nope"`) {
			t.Errorf("load image into a missing cluster: %s", r)
		}
	})
}

// portForwardGet runs kubectl port-forward to target's port and GETs / through
// it.
func (h *harness) portForwardGet(cluster, target string, port int) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := h.kubectlCommand(ctx, newVersion, cluster, "port-forward", "--address=127.0.0.1", target, fmt.Sprintf(":%d", port))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := startTracked(cmd); err != nil {
		h.t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		untrack(cmd.Process.Pid)
	}()
	// "Forwarding from 127.0.0.1:41234 -> 8080"
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		h.t.Fatalf("port-forward: %v (%q)", err, line)
	}
	m := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(line)
	if m == nil {
		h.t.Fatalf("port-forward printed %q", line)
	}
	resp, err := http.Get("http://127.0.0.1:" + m[1] + "/")
	if err != nil {
		h.t.Fatalf("GET through port-forward: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestRealNodeClustersSideBySideAreIsolated runs two real-node clusters at
// once. Each works on its own; pods of one reach neither the pods nor the
// API server of the other; deleting one leaves the other working.
func TestRealNodeClustersSideBySideAreIsolated(t *testing.T) {
	h := newHarness(t)
	// Different pod subnets, so that reaching the other cluster's pod IP
	// cannot mean reaching a pod of one's own.
	other := filepath.Join(t.TempDir(), "b.yaml")
	if err := os.WriteFile(other, []byte("apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata: {name: b}\nspec:\n  network: {podSubnet: 10.245.0.0/16}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i, args := range [][]string{{"create", "cluster", "a"}, {"create", "cluster", "-f", other}} {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = h.run(context.Background(), args...) }()
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("create: %s", r)
		}
	}
	cs := h.clusters()
	if cs["a"].Endpoint == cs["b"].Endpoint {
		t.Fatalf("both clusters have endpoint %s", cs["a"].Endpoint)
	}
	h.deployHello("a")
	h.deployHello("b")
	bPod := h.mustKubectl("b", "get", "pods", "-l", "app=hello", "-o", "jsonpath={.items[0].status.podIP}")
	if !strings.HasPrefix(bPod, "10.245.") {
		t.Fatalf("b's pod IP %q is not from its pod subnet", bPod)
	}
	bAPI := strings.TrimPrefix(cs["b"].Endpoint, "https://")

	// The control: b's own pods reach b's pod.
	if phase, log := h.runPod("b", "own", "get", "http://"+bPod+":8080/", "5s"); phase != "Succeeded" {
		t.Fatalf("b cannot reach its own pod %s: %s", bPod, log)
	}
	// a's pods reach neither b's pod nor b's API server.
	for _, url := range []string{"http://" + bPod + ":8080/", "https://" + bAPI + "/healthz"} {
		if phase, log := h.runPod("a", "intruder", "get", url, "3s"); phase != "Failed" {
			t.Errorf("a pod of cluster a reached %s of cluster b: %s, %q", url, phase, log)
		}
	}

	h.must("delete", "cluster", "a")
	if phase, log := h.runPod("b", "after", "get", "http://hello/"); phase != "Succeeded" || !strings.Contains(log, "hello from") {
		t.Errorf("b after deleting a: %s, %q", phase, log)
	}
}

// TestKilledRealNodeCreateLeavesNothing kills the CLI with SIGKILL at
// several points of a real-node create, and the supervisor and every
// process of a running real-node cluster with its pods: delete always
// removes everything (the harness compares the host before and after).
func TestKilledRealNodeCreateLeavesNothing(t *testing.T) {
	h := newHarness(t)
	for i, delay := range []time.Duration{20 * time.Millisecond, 150 * time.Millisecond, 600 * time.Millisecond, 2500 * time.Millisecond} {
		name := fmt.Sprintf("killed-%d", i)
		t.Run(delay.String(), func(t *testing.T) {
			h := h.with(t)
			cmd := h.command(context.Background(), "create", "cluster", name)
			if err := startTracked(cmd); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			untrack(cmd.Process.Pid)
			if _, err := os.Stat(h.clusterDir(name)); err == nil {
				if _, listed := h.clusters()[name]; !listed {
					t.Fatal("cluster dir exists but get clusters hides it")
				}
			}
			h.must("delete", "cluster", name)
			if _, err := os.Stat(h.clusterDir(name)); err == nil {
				t.Error("cluster dir left after delete")
			}
		})
	}
	t.Run("every process killed", func(t *testing.T) {
		h := h.with(t)
		h.must("create", "cluster", "victim")
		h.deployHello("victim")
		var plan struct {
			Node struct {
				Network struct {
					Cgroup string `json:"cgroup"`
				} `json:"network"`
			} `json:"node"`
		}
		b, err := os.ReadFile(filepath.Join(h.clusterDir("victim"), "cluster.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &plan); err != nil || plan.Node.Network.Cgroup == "" {
			t.Fatalf("cluster.json names no cgroup: %v", err)
		}
		// Everything: the supervisor and components, and what is in the
		// cluster's cgroup (pods, shims, containerd, kubelet).
		for _, pid := range clusterPIDs(h.clusterDir("victim")) {
			_ = osexec.Command("kill", "-9", pid).Run()
		}
		deadline := time.Now().Add(30 * time.Second)
		for h.clusters()["victim"].Phase != "Broken" {
			if time.Now().After(deadline) {
				t.Fatalf("phase = %s after killing everything", h.clusters()["victim"].Phase)
			}
			time.Sleep(100 * time.Millisecond)
		}
		h.must("delete", "cluster", "victim")
	})
}
