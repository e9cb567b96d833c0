package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/test/testhost"
)

// helloBase is the hello image (examples/hello), the base of the images the
// registry tests push to their upstreams: those run `/hello sleep`.
func helloBase(t testing.TB) v1.Image {
	t.Helper()
	img, err := tarball.ImageFromPath(hello.archiveFor(t), nil)
	if err != nil {
		t.Fatalf("read the hello image archive: %v", err)
	}
	return img
}

// clientFor is a client-go clientset for a cluster's API server.
func (h *harness) clientFor(cluster string) kubernetes.Interface {
	h.t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(h.must("get", "kubeconfig", cluster).stdout))
	if err != nil {
		h.t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return cs
}

// pullPod is a pod of a cluster that runs an image's entrypoint with
// "sleep" (the hello program waits until killed), to see an image pulled.
type pullPod struct {
	cs      kubernetes.Interface
	name    string
	image   string
	created time.Time
}

// startPullPod creates the pod.
func startPullPod(t testing.TB, cs kubernetes.Interface, name, image string) *pullPod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "c", Image: image, Args: []string{"sleep"}}},
		},
	}
	p := &pullPod{cs: cs, name: name, image: image, created: time.Now()}
	if _, err := cs.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s (%s): %v", name, image, err)
	}
	return p
}

// pullFailureReasons are the reasons a container waits with when its image
// cannot be pulled.
var pullFailureReasons = []string{"ErrImagePull", "ImagePullBackOff"}

// wait polls the pod every 100 ms until its container runs (true) or
// waits because its image cannot be pulled (false; unless untilRunning,
// which waits through pull failures, as the kubelet retries), and returns
// the outcome and the container's last waiting message.
func (p *pullPod) wait(t testing.TB, timeout time.Duration, untilRunning bool) (running bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pod, err := p.cs.CoreV1().Pods("default").Get(context.Background(), p.name, metav1.GetOptions{})
		if err == nil && len(pod.Status.ContainerStatuses) == 1 {
			st := pod.Status.ContainerStatuses[0].State
			switch {
			case st.Running != nil:
				return true, msg
			case st.Terminated != nil:
				t.Fatalf("pod %s (%s): container terminated: %+v", p.name, p.image, st.Terminated)
			case st.Waiting != nil:
				if st.Waiting.Message != "" {
					msg = st.Waiting.Reason + ": " + st.Waiting.Message
				}
				if !untilRunning && (st.Waiting.Reason == pullFailureReasons[0] || st.Waiting.Reason == pullFailureReasons[1]) {
					return false, msg
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s (%s): neither running nor failing to pull after %s (last error %v, last message %q)", p.name, p.image, timeout, err, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustRun waits until the pod's container runs.
func (p *pullPod) mustRun(t testing.TB) {
	t.Helper()
	if running, msg := p.wait(t, 90*time.Second, false); !running {
		t.Fatalf("pod %s could not pull %s: %s", p.name, p.image, msg)
	}
}

// pulledIn is the pull time the kubelet reported for the pod ("Successfully
// pulled image ... in 1.2s (1.2s including waiting)"), or 0.
func (p *pullPod) pulledIn(t testing.TB) time.Duration {
	t.Helper()
	evs, err := p.cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.name})
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^Successfully pulled image "[^"]*" in (\S+) `)
	for _, ev := range evs.Items {
		if m := re.FindStringSubmatch(ev.Message); ev.Reason == "Pulled" && m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				return d
			}
		}
	}
	return 0
}

// imageBlobs are the digests of an image's config and layers.
func imageBlobs(t testing.TB, img v1.Image) []string {
	t.Helper()
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{cfg.String()}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

// lastLayer is the digest of an image's last layer: PushImage's padding,
// new to every registry.
func lastLayer(t testing.TB, img v1.Image) string {
	t.Helper()
	b := imageBlobs(t, img)
	return b[len(b)-1]
}

// daemonInfo is R/daemon.json, written by the running registry daemon.
type daemonInfo struct {
	PID  int    `json:"pid"`
	Addr string `json:"addr"`
}

func (h *harness) daemonInfo() daemonInfo {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.registryDir(), "daemon.json"))
	if err != nil {
		h.t.Fatalf("the registry daemon's daemon.json: %v", err)
	}
	var d daemonInfo
	if err := json.Unmarshal(b, &d); err != nil || d.PID <= 0 || d.Addr == "" {
		h.t.Fatalf("daemon.json %q: %v", b, err)
	}
	return d
}

// registryStatus is the part of `registry status -o json` the tests read.
type registryStatus struct {
	Addr    string   `json:"addr"`
	PID     int      `json:"pid"`
	Dir     string   `json:"dir"`
	Mirrors []string `json:"mirrors"`
	Local   struct {
		Images []string `json:"images"`
	} `json:"local"`
}

func (h *harness) registryStatus() registryStatus {
	h.t.Helper()
	r := h.must("registry", "status", "-o", "json")
	var s registryStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		h.t.Fatalf("registry status -o json: %v\n%s", err, r)
	}
	return s
}

// corruptBlobs walks a registry store's blobs (DIR/blobs/sha256/<hex>) and
// returns those whose content's sha256 is not their name.
func corruptBlobs(t testing.TB, dir string) (bad []string, checked int) {
	t.Helper()
	root := filepath.Join(dir, "blobs", "sha256")
	entries, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	hexName := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, e := range entries {
		if !e.Type().IsRegular() || !hexName.MatchString(e.Name()) {
			continue
		}
		f, err := os.Open(filepath.Join(root, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.New()
		_, err = io.Copy(sum, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		checked++
		if got := hex.EncodeToString(sum.Sum(nil)); got != e.Name() {
			bad = append(bad, fmt.Sprintf("%s (content sha256:%s)", e.Name(), got))
		}
	}
	return bad, checked
}

// nsTransport sends the requests of a registry client to the registry
// daemon's cache for upstream ns, as containerd does through hosts.toml:
// ?ns=HOST on every request, under /insecure for a plain-HTTP upstream.
type nsTransport struct {
	ns       string
	insecure bool
}

func (n nsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	if n.insecure {
		req.URL.Path = "/insecure" + req.URL.Path
	}
	q := req.URL.Query()
	q.Set("ns", n.ns)
	req.URL.RawQuery = q.Encode()
	return (&http.Transport{Proxy: nil, DisableKeepAlives: true}).RoundTrip(req)
}

// pullThroughDaemon pulls repo:tag of upstream ns through the daemon at
// addr from the host and reads every blob: go-containerregistry checks
// each against its digest.
func pullThroughDaemon(addr, ns, ref string, insecure bool) (v1.Image, error) {
	return testhost.PullImage(addr+"/"+ref, remote.WithTransport(nsTransport{ns: ns, insecure: insecure}))
}

// dockerConfig writes a Docker config.json with a user for each registry
// and returns its dir (for DOCKER_CONFIG).
func dockerConfig(t testing.TB, users map[string][2]string) string {
	t.Helper()
	auths := map[string]map[string]string{}
	for host, u := range users {
		auths[host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(u[0] + ":" + u[1]))}
	}
	b, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// createClusters creates real-node clusters at once, each with its args.
func (h *harness) createClusters(clusters map[string][]string) {
	h.t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for name, args := range clusters {
		wg.Go(func() {
			if r := h.run(context.Background(), append([]string{"create", "cluster", name}, args...)...); r.err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("create cluster %s: %s", name, r))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		h.t.Fatal(strings.Join(failed, "\n"))
	}
}

// peerCache runs `ephemera registry serve` in a test host, listening on
// its address, with its own registry dir (configured with configure, run
// before it starts); the test's cleanup stops it.
func peerCache(t *testing.T, host *testhost.Host, port int, configure ...string) (url, dir string) {
	t.Helper()
	dir = t.TempDir()
	if len(configure) > 0 {
		cmd := host.Command(ephemeraBin, append([]string{"--registry-dir", dir, "registry", "configure"}, configure...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("peer: registry configure: %v\n%s", err, out)
		}
	}
	listen := fmt.Sprintf("%s:%d", host.Addr(), port)
	cmd := host.Command(ephemeraBin, "--registry-dir", dir, "registry", "serve", "--listen", listen)
	var log strings.Builder
	var logMu sync.Mutex
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return log.Write(p) })
	cmd.Stderr = cmd.Stdout
	if err := startTracked(cmd); err != nil {
		t.Fatalf("peer: registry serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Logf("peer cache: %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("peer cache killed: %v", <-exited)
			t.Errorf("peer cache did not stop on SIGTERM in 15s")
		}
		untrack(cmd.Process.Pid)
	})
	url = "http://" + listen
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get(url + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, dir
			}
		}
		select {
		case err := <-exited:
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("peer cache exited: %v\n%s", err, log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("peer cache does not answer GET /v2/ at %s after 15s (%v):\n%s", url, err, log.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func digestOf(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
