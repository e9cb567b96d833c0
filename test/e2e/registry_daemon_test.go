package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ephemera-dev/ephemera/internal/registry"
	"github.com/ephemera-dev/ephemera/test/testhost"
)

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
