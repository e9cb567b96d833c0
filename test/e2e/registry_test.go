package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ephemera-dev/ephemera/test/testhost"
)

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
