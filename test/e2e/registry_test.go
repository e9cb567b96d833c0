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

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/internal/registry"
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

// TestRegistry runs the per-host image cache and local registry with three
// real-node clusters and upstream registries in test hosts: pulls are
// cached (a second cluster's pull makes no upstream blob request, a third
// pulls the tag with the upstream stopped), concurrent pulls fetch each
// blob once, pushed local images run by their localhost name, credentials
// come from a Docker config.json, a TLS upstream is trusted with
// --registry-ca, a plain-HTTP upstream is used only when the cluster names
// it, kill -9 of the daemon during a pull leaves no corrupt blob and the
// pull succeeds on retry, and a cache can pull through a peer cache. The
// daemon starts on demand with the first cluster; the harness stops it
// (registry stop --purge) and its census reports a daemon left behind.
func TestRegistry(t *testing.T) {
	h := newHarness(t)
	world := testhost.New(t, "upstreams")
	plain := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5000})
	unnamed := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5002})
	slow := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5003, Throttle: 8 << 20})
	private := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5004, BasicAuth: &[2]string{"ci", "s3cret"}})
	secure := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5443, TLS: true})
	peerHost := testhost.New(t, "peer")
	origin := peerHost.ServeRegistry(t, testhost.RegistryOptions{Port: 5000})

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, secure.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	configure := []string{"registry", "configure", "--registry-ca", ca}
	for _, r := range []*testhost.Registry{plain, unnamed, slow, private, secure, origin} {
		configure = append(configure, "--registry-mirror", r.Host())
	}
	h.must(configure...)
	// The daemon, started by the first cluster, reads the credentials of
	// the Docker config of the process that starts it.
	h.env = append(h.env, "DOCKER_CONFIG="+dockerConfig(t, map[string][2]string{private.Host(): {"ci", "s3cret"}}))

	base := helloBase(t)
	h.createClusters(map[string][]string{
		// The private upstream is plain HTTP too; containerd, which has no
		// credentials, cannot pull from it by itself.
		"a": {"--insecure-registry", plain.Host(), "--insecure-registry", slow.Host(), "--insecure-registry", private.Host()},
		"b": {"--insecure-registry", plain.Host(), "--insecure-registry", slow.Host()},
		"c": {"--insecure-registry", plain.Host(), "--insecure-registry", unnamed.Host()},
	})
	a, b, c := h.clientFor("a"), h.clientFor("b"), h.clientFor("c")

	st := h.registryStatus()
	if d := h.daemonInfo(); st.PID != d.PID || st.Addr != d.Addr || !strings.HasPrefix(d.Addr, "127.0.0.1:") {
		t.Errorf("registry status says pid %d at %s, daemon.json %+v: want the running daemon on host loopback", st.PID, st.Addr, d)
	}
	for _, r := range []*testhost.Registry{plain, secure} {
		if !strings.Contains(strings.Join(st.Mirrors, " "), r.Host()) {
			t.Errorf("registry status mirrors %v, want %s among them", st.Mirrors, r.Host())
		}
	}

	t.Run("cached pull", func(t *testing.T) {
		img := testhost.PushImage(t, plain, "team/app:v1", base, 1<<20)
		ref := plain.Host() + "/team/app:v1"
		startPullPod(t, a, "cached-a", ref).mustRun(t)
		if plain.Requests("manifest") == 0 {
			t.Errorf("cluster a's pull made no manifest request upstream")
		}
		for _, d := range imageBlobs(t, img) {
			if n := plain.BlobGets(d); n > 1 {
				t.Errorf("blob %s fetched %d times upstream, want at most once", d, n)
			}
		}
		if n := plain.BlobGets(lastLayer(t, img)); n != 1 {
			t.Errorf("the new layer was fetched %d times upstream, want 1", n)
		}
		blobs := plain.Requests("blob")
		startPullPod(t, b, "cached-b", ref).mustRun(t)
		if n := plain.Requests("blob") - blobs; n != 0 {
			t.Errorf("cluster b's pull of a cached image made %d blob requests upstream, want none", n)
		}
		plain.Stop()
		defer plain.Start()
		startPullPod(t, c, "cached-c", ref).mustRun(t)
	})

	t.Run("concurrent pulls", func(t *testing.T) {
		// 50 MB at 8 MiB/s: both pulls are under way together.
		img := testhost.PushImage(t, slow, "team/big:v1", base, 50<<20)
		ref := slow.Host() + "/team/big:v1"
		pa, pb := startPullPod(t, a, "big-a", ref), startPullPod(t, b, "big-b", ref)
		pa.mustRun(t)
		pb.mustRun(t)
		for _, d := range imageBlobs(t, img) {
			if n := slow.BlobGets(d); n > 1 {
				t.Errorf("blob %s fetched %d times upstream, want at most once", d, n)
			}
		}
		if n := slow.BlobGets(lastLayer(t, img)); n != 1 {
			t.Errorf("the 50 MB layer was fetched %d times upstream, want once", n)
		}
	})

	t.Run("local image", func(t *testing.T) {
		r := h.must("push", "image", hello.archiveFor(t), "--tag", "e2e/hello:v1")
		local := strings.TrimSpace(r.stdout)
		if !regexp.MustCompile(`^localhost:\d+/e2e/hello:v1$`).MatchString(local) {
			t.Fatalf("push image printed %q, want localhost:PORT/e2e/hello:v1", r.stdout)
		}
		port := strings.TrimPrefix(strings.Split(local, "/")[0], "localhost:")
		if !strings.HasSuffix(h.daemonInfo().Addr, ":"+port) {
			t.Errorf("pushed as %s, but the daemon listens on %s", local, h.daemonInfo().Addr)
		}
		for name, cs := range map[string]kubernetes.Interface{"a": a, "b": b} {
			startPullPod(t, cs, "local-"+name, local).mustRun(t)
			cm, err := cs.CoreV1().ConfigMaps("kube-public").Get(context.Background(), "local-registry-hosting", metav1.GetOptions{})
			if err != nil {
				t.Errorf("cluster %s: ConfigMap kube-public/local-registry-hosting: %v", name, err)
				continue
			}
			if v := cm.Data["localRegistryHosting.v1"]; !strings.Contains(v, "localhost:"+port) {
				t.Errorf("cluster %s: local-registry-hosting says %q, want host localhost:%s", name, v, port)
			}
		}
		if st := h.registryStatus(); !strings.Contains(strings.Join(st.Local.Images, " "), "e2e/hello:v1") {
			t.Errorf("registry status lists local images %v, want e2e/hello:v1", st.Local.Images)
		}
	})

	t.Run("private upstream", func(t *testing.T) {
		img := testhost.PushImage(t, private, "private/app:v1", base, 256<<10)
		startPullPod(t, a, "private-a", private.Host()+"/private/app:v1").mustRun(t)
		if n := private.BlobGets(lastLayer(t, img)); n != 1 {
			t.Errorf("the private upstream served the new layer %d times, want once (with the credentials)", n)
		}
	})

	t.Run("TLS upstream", func(t *testing.T) {
		img := testhost.PushImage(t, secure, "secure/app:v1", base, 256<<10)
		// containerd does not trust the test CA: only the cache can pull.
		startPullPod(t, b, "tls-b", secure.Host()+"/secure/app:v1").mustRun(t)
		if n := secure.BlobGets(lastLayer(t, img)); n != 1 {
			t.Errorf("the TLS upstream served the new layer %d times, want once", n)
		}
	})

	t.Run("insecure upstream only when named", func(t *testing.T) {
		img := testhost.PushImage(t, unnamed, "plain/app:v1", base, 256<<10)
		ref := unnamed.Host() + "/plain/app:v1"
		p := startPullPod(t, a, "insecure-a", ref)
		if running, _ := p.wait(t, 60*time.Second, false); running {
			t.Errorf("cluster a pulled %s over plain HTTP without --insecure-registry", ref)
		}
		if n := unnamed.Requests("manifest") + unnamed.Requests("blob"); n != 0 {
			t.Errorf("the plain-HTTP upstream no cluster named for a got %d GETs", n)
		}
		startPullPod(t, c, "insecure-c", ref).mustRun(t)
		if n := unnamed.BlobGets(lastLayer(t, img)); n != 1 {
			t.Errorf("the plain-HTTP upstream served the new layer %d times, want once", n)
		}
	})

	t.Run("kill -9 during a pull", func(t *testing.T) {
		img := testhost.PushImage(t, slow, "team/slow:v1", base, 24<<20)
		pad := lastLayer(t, img)
		p := startPullPod(t, a, "killed-a", slow.Host()+"/team/slow:v1")
		deadline := time.Now().Add(60 * time.Second)
		for slow.BlobGets(pad) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the pull did not reach the 24 MB layer in 60s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Second) // 8 of 24 MiB
		d := h.daemonInfo()
		if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 the registry daemon %d: %v", d.PID, err)
		}
		cacheDir := filepath.Join(h.registryDir(), "cache")
		if bad, _ := corruptBlobs(t, cacheDir); len(bad) > 0 {
			t.Errorf("after kill -9, the cache store holds blobs whose content is not their digest:\n  %s", strings.Join(bad, "\n  "))
		}
		// The kubelet retries: through containerd's fallback to the
		// upstream, or a restarted daemon.
		if running, msg := p.wait(t, 120*time.Second, true); !running {
			t.Fatalf("the pull did not succeed on retry: %s", msg)
		}
		h.must("registry", "start")
		nd := h.daemonInfo()
		if nd.PID == d.PID {
			t.Fatalf("daemon.json names the killed daemon %d", d.PID)
		}
		if _, err := pullThroughDaemon(nd.Addr, slow.Host(), "team/slow:v1", true); err != nil {
			t.Errorf("pull through the restarted daemon, digests checked: %v", err)
		}
		bad, checked := corruptBlobs(t, cacheDir)
		if len(bad) > 0 {
			t.Errorf("the cache store holds blobs whose content is not their digest:\n  %s", strings.Join(bad, "\n  "))
		}
		if checked == 0 {
			t.Errorf("no blob in %s/blobs/sha256: the test checked nothing", cacheDir)
		}
		// The restarted daemon removed the killed one's partial download.
		if tmp, _ := filepath.Glob(filepath.Join(cacheDir, "blobs", "sha256", ".tmp-*")); len(tmp) > 0 {
			t.Errorf("partial downloads left in the store after the restart: %v", tmp)
		}
	})

	t.Run("chained caches", func(t *testing.T) {
		// The peer pulls from the origin, which it reaches on its own
		// test host, over plain HTTP.
		peerURL, peerDir := peerCache(t, peerHost, 5001, "--insecure-registry", origin.Host(), "--registry-mirror", origin.Host())
		peer := strings.TrimPrefix(peerURL, "http://")
		h.must("registry", "configure", "--registry-upstream", peerURL, "--insecure-registry", peer, "--restart")
		img := testhost.PushImage(t, origin, "chain/app:v1", base, 1<<20)
		ref := origin.Host() + "/chain/app:v1"
		// containerd cannot reach the plain-HTTP origin by itself
		// (not named insecure): the pods pull through the caches.
		startPullPod(t, a, "chained-a", ref).mustRun(t)
		startPullPod(t, c, "chained-c", ref).mustRun(t)
		for _, d := range imageBlobs(t, img) {
			if n := origin.BlobGets(d); n > 1 {
				t.Errorf("the origin served blob %s %d times, want at most once", d, n)
			}
		}
		pad := lastLayer(t, img)
		if n := origin.BlobGets(pad); n != 1 {
			t.Errorf("the origin served the new layer %d times, want once", n)
		}
		if _, err := os.Stat(filepath.Join(peerDir, "cache", "blobs", "sha256", strings.TrimPrefix(pad, "sha256:"))); err != nil {
			t.Errorf("the new layer is not in the peer cache's store: %v", err)
		}
		if _, err := os.Stat(filepath.Join(h.registryDir(), "cache", "blobs", "sha256", strings.TrimPrefix(pad, "sha256:"))); err != nil {
			t.Errorf("the new layer is not in the host cache's store: %v", err)
		}
	})
}

// TestRegistryDaemon checks the registry daemon from the host, without a
// cluster, as containerd uses it (ns= on every request, /insecure for a
// plain-HTTP upstream): started by `registry start` with the credentials
// of its Docker config, it caches pulls (a second pull makes no upstream
// blob request, the tag is served with the upstream stopped), fetches a
// blob once for concurrent pulls, uses basic auth, trusts --registry-ca,
// reaches a plain-HTTP upstream only under /insecure, serves pushed local
// images, survives kill -9 during a pull without a corrupt blob, pulls
// through a peer cache, and `registry stop --purge` leaves nothing.
func TestRegistryDaemon(t *testing.T) {
	h := newHarness(t)
	world := testhost.New(t, "upstreams")
	plain := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5000})
	slow := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5003, Throttle: 8 << 20})
	private := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5004, BasicAuth: &[2]string{"ci", "s3cret"}})
	secure := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5443, TLS: true})
	peerHost := testhost.New(t, "peer")
	origin := peerHost.ServeRegistry(t, testhost.RegistryOptions{Port: 5000})

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, secure.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	unnamed := world.ServeRegistry(t, testhost.RegistryOptions{Port: 5005})
	configure := []string{"registry", "configure", "--registry-ca", ca}
	for _, r := range []*testhost.Registry{plain, slow, private, secure, origin, unnamed} {
		configure = append(configure, "--registry-mirror", r.Host())
	}
	h.must(configure...)
	// The test pulls as clusters do: these were named insecure by one (see
	// create cluster --insecure-registry); unnamed was not.
	for _, r := range []*testhost.Registry{plain, slow, private} {
		if err := registry.AllowInsecure(h.registryDir(), r.Host()); err != nil {
			t.Fatal(err)
		}
	}
	h.env = append(h.env, "DOCKER_CONFIG="+dockerConfig(t, map[string][2]string{private.Host(): {"ci", "s3cret"}}))
	if r := h.run(context.Background(), "registry", "status"); r.err == nil {
		t.Errorf("registry status before any start: %s, want exit 1", r)
	}
	h.must("registry", "start")
	d := h.daemonInfo()
	st := h.registryStatus()
	if st.PID != d.PID || st.Addr != d.Addr || !strings.HasPrefix(d.Addr, "127.0.0.1:") {
		t.Errorf("registry status says pid %d at %s, daemon.json %+v: want the running daemon on host loopback", st.PID, st.Addr, d)
	}
	if !strings.Contains(strings.Join(st.Mirrors, " "), plain.Host()) {
		t.Errorf("registry status mirrors %v, want %s among them", st.Mirrors, plain.Host())
	}
	if !isRegistryDaemon(fmt.Sprint(d.PID)) {
		t.Errorf("the host census does not see pid %d as the registry daemon", d.PID)
	}
	h.must("registry", "start") // a second start is a no-op
	if nd := h.daemonInfo(); nd.PID != d.PID {
		t.Errorf("a second registry start replaced the daemon %d by %d", d.PID, nd.PID)
	}
	base := helloBase(t)
	addr := func() string { return h.daemonInfo().Addr }

	t.Run("cached pull", func(t *testing.T) {
		img := testhost.PushImage(t, plain, "team/app:v1", base, 1<<20)
		got, err := pullThroughDaemon(addr(), plain.Host(), "team/app:v1", true)
		if err != nil {
			t.Fatalf("first pull: %v", err)
		}
		if digestOf(t, got) != digestOf(t, img) {
			t.Errorf("pulled %s, pushed %s", digestOf(t, got), digestOf(t, img))
		}
		for _, d := range imageBlobs(t, img) {
			if n := plain.BlobGets(d); n != 1 {
				t.Errorf("blob %s fetched %d times upstream, want once", d, n)
			}
		}
		blobs := plain.Requests("blob")
		if _, err := pullThroughDaemon(addr(), plain.Host(), "team/app:v1", true); err != nil {
			t.Fatalf("second pull: %v", err)
		}
		if n := plain.Requests("blob") - blobs; n != 0 {
			t.Errorf("the second pull made %d blob requests upstream, want none", n)
		}
		plain.Stop()
		defer plain.Start()
		if _, err := pullThroughDaemon(addr(), plain.Host(), "team/app:v1", true); err != nil {
			t.Errorf("pull of the tag with the upstream stopped: %v", err)
		}
	})

	t.Run("concurrent pulls", func(t *testing.T) {
		img := testhost.PushImage(t, slow, "team/big:v1", base, 16<<20)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() { _, errs[i] = pullThroughDaemon(addr(), slow.Host(), "team/big:v1", true) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Errorf("pull: %v", err)
			}
		}
		// The config and the padding are new; the base layers may be
		// cached already.
		for i, d := range imageBlobs(t, img) {
			if n := slow.BlobGets(d); n > 1 || n == 0 && (i == 0 || d == lastLayer(t, img)) {
				t.Errorf("blob %s fetched %d times upstream for 3 concurrent pulls, want once", d, n)
			}
		}
	})

	t.Run("private upstream", func(t *testing.T) {
		img := testhost.PushImage(t, private, "private/app:v1", base, 1024)
		if _, err := pullThroughDaemon(addr(), private.Host(), "private/app:v1", true); err != nil {
			t.Fatalf("pull with the daemon's credentials: %v", err)
		}
		if n := private.BlobGets(lastLayer(t, img)); n != 1 {
			t.Errorf("the private upstream served the new layer %d times, want once", n)
		}
	})

	t.Run("TLS upstream", func(t *testing.T) {
		img := testhost.PushImage(t, secure, "secure/app:v1", base, 1024)
		if _, err := pullThroughDaemon(addr(), secure.Host(), "secure/app:v1", false); err != nil {
			t.Fatalf("pull from a TLS upstream signed by the --registry-ca: %v", err)
		}
		if n := secure.BlobGets(lastLayer(t, img)); n != 1 {
			t.Errorf("the TLS upstream served the new layer %d times, want once", n)
		}
	})

	t.Run("insecure upstream only when named", func(t *testing.T) {
		img := testhost.PushImage(t, plain, "plain/app:v1", base, 1024)
		m, b := plain.Requests("manifest"), plain.Requests("blob")
		if _, err := pullThroughDaemon(addr(), plain.Host(), "plain/app:v1", false); err == nil {
			t.Error("a pull reached a plain-HTTP upstream without /insecure")
		}
		if plain.Requests("manifest") != m || plain.Requests("blob") != b {
			t.Errorf("the plain-HTTP upstream got GETs for a pull not allowed plain HTTP")
		}
		if _, err := pullThroughDaemon(addr(), plain.Host(), "plain/app:v1", true); err != nil {
			t.Errorf("pull under /insecure: %v", err)
		}
		if n := plain.BlobGets(lastLayer(t, img)); n != 1 {
			t.Errorf("the new layer was fetched %d times, want once", n)
		}
		// Under /insecure too, a registry no cluster named stays HTTPS:
		// no pod can downgrade it.
		testhost.PushImage(t, unnamed, "plain/app:v1", base, 1024)
		m, b = unnamed.Requests("manifest"), unnamed.Requests("blob")
		if _, err := pullThroughDaemon(addr(), unnamed.Host(), "plain/app:v1", true); err == nil {
			t.Error("a pull under /insecure reached a plain-HTTP upstream no cluster named")
		}
		if unnamed.Requests("manifest") != m || unnamed.Requests("blob") != b {
			t.Errorf("the unnamed plain-HTTP upstream got GETs")
		}
	})

	t.Run("local image", func(t *testing.T) {
		r := h.must("push", "image", hello.archiveFor(t), "--tag", "e2e/hello:v1")
		local := strings.TrimSpace(r.stdout)
		port := strings.TrimPrefix(addr(), "127.0.0.1:")
		if local != "localhost:"+port+"/e2e/hello:v1" {
			t.Fatalf("push image printed %q, want localhost:%s/e2e/hello:v1", r.stdout, port)
		}
		ref, err := name.ParseReference(local)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(ref, remote.WithTransport(&http.Transport{Proxy: nil}))
		if err != nil {
			t.Fatalf("pull %s from the host: %v", local, err)
		}
		if g, w := imageBlobs(t, got)[0], imageBlobs(t, base)[0]; g != w {
			t.Errorf("%s has config %s, the archive's image %s", local, g, w)
		}
		if st := h.registryStatus(); !strings.Contains(strings.Join(st.Local.Images, " "), "e2e/hello:v1") {
			t.Errorf("registry status lists local images %v, want e2e/hello:v1", st.Local.Images)
		}
	})

	t.Run("kill -9 during a pull", func(t *testing.T) {
		img := testhost.PushImage(t, slow, "team/slow:v1", base, 24<<20)
		pad := lastLayer(t, img)
		d := h.daemonInfo()
		pulled := make(chan error, 1)
		go func() { _, err := pullThroughDaemon(d.Addr, slow.Host(), "team/slow:v1", true); pulled <- err }()
		deadline := time.Now().Add(30 * time.Second)
		for slow.BlobGets(pad) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the pull did not reach the 24 MiB layer in 30s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Second) // 8 of 24 MiB
		if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 the registry daemon %d: %v", d.PID, err)
		}
		if err := <-pulled; err == nil {
			t.Error("a pull whose daemon was killed half-way succeeded")
		}
		cacheDir := filepath.Join(h.registryDir(), "cache")
		if bad, _ := corruptBlobs(t, cacheDir); len(bad) > 0 {
			t.Errorf("after kill -9, the store holds blobs whose content is not their digest:\n  %s", strings.Join(bad, "\n  "))
		}
		h.must("registry", "start")
		if _, err := pullThroughDaemon(addr(), slow.Host(), "team/slow:v1", true); err != nil {
			t.Errorf("pull through the restarted daemon, digests checked: %v", err)
		}
		bad, checked := corruptBlobs(t, cacheDir)
		if len(bad) > 0 || checked == 0 {
			t.Errorf("store: %d blobs checked, bad: %v", checked, bad)
		}
		if tmp, _ := filepath.Glob(filepath.Join(cacheDir, "blobs", "sha256", ".tmp-*")); len(tmp) > 0 {
			t.Errorf("partial downloads left in the store after the restart: %v", tmp)
		}
	})

	t.Run("chained caches", func(t *testing.T) {
		peerURL, peerDir := peerCache(t, peerHost, 5001, "--insecure-registry", origin.Host(), "--registry-mirror", origin.Host())
		peer := strings.TrimPrefix(peerURL, "http://")
		h.must("registry", "configure", "--registry-upstream", peerURL, "--insecure-registry", peer, "--restart")
		img := testhost.PushImage(t, origin, "chain/app:v1", base, 1<<20)
		// The origin is plain HTTP, but only the peer reaches it: the
		// host's daemon is not told it may.
		for range 2 {
			if _, err := pullThroughDaemon(addr(), origin.Host(), "chain/app:v1", false); err != nil {
				t.Fatalf("pull through the peer: %v", err)
			}
		}
		for _, d := range imageBlobs(t, img) {
			if n := origin.BlobGets(d); n > 1 {
				t.Errorf("the origin served blob %s %d times, want at most once", d, n)
			}
		}
		pad := strings.TrimPrefix(lastLayer(t, img), "sha256:")
		if n := origin.BlobGets("sha256:" + pad); n != 1 {
			t.Errorf("the origin served the new layer %d times, want once", n)
		}
		for _, dir := range []string{filepath.Join(peerDir, "cache"), filepath.Join(h.registryDir(), "cache")} {
			if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", pad)); err != nil {
				t.Errorf("the new layer is not in %s: %v", dir, err)
			}
		}
	})

	t.Run("stop --purge", func(t *testing.T) {
		pid := h.daemonInfo().PID
		h.must("registry", "stop", "--purge")
		if err := syscall.Kill(pid, 0); err == nil && !isZombie(pid) {
			t.Errorf("the daemon %d still runs after registry stop", pid)
		}
		if _, err := os.Stat(filepath.Join(h.registryDir(), "cache")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the cache is still there after stop --purge: %v", err)
		}
		if r := h.run(context.Background(), "registry", "status"); r.err == nil {
			t.Errorf("registry status after stop: %s, want exit 1", r)
		}
	})
}

func digestOf(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
