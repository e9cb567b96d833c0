package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ephemera-dev/ephemera/internal/provider/local/portproxy"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

// A real-node cluster pulls images through the host's registry cache (see
// package registry): containerd's per-registry hosts.toml names the cache
// as a mirror of every registry it mirrors, and the registry itself as the
// fallback when the cache is down. The cache listens on host loopback
// only; the cluster reaches it on the host end of its link, where its
// supervisor listens on a socket the creator bound and splices every
// connection to the cache's loopback address (read when the connection
// comes, so a cache restarted on another port is found).

// nodeRegistry is how a real node pulls through the host's registry cache.
type nodeRegistry struct {
	// Dir is the registry dir (registry.DefaultDir), where the supervisor
	// finds the running cache.
	Dir string `json:"dir"`
	// Port is the listener's on the host end of the cluster's link.
	Port uint16 `json:"port"`
	// Local is the local registry's name on the host, localhost:PORT;
	// inside the cluster it names the same registry.
	Local string `json:"local"`
	// Mirrors are the registries pulled through the cache.
	Mirrors []string `json:"mirrors"`
}

// certsDir holds containerd's hosts.toml files, one dir per registry.
const certsDir = "node/certs.d"

// registryLinkPort is the port the cache gets on the host end of a
// cluster's link when it is free there (else any free port).
const registryLinkPort = registry.DefaultPort

// insecurePrefix is the path under which the cache may reach a request's
// registry over plain HTTP (the cluster named it insecure).
const insecurePrefix = "/insecure"

// upstreamServer is where containerd pulls host from when no mirror
// answers.
func upstreamServer(host string, insecure bool) string {
	if insecure {
		return "http://" + host
	}
	if host == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + host
}

// hostsFiles returns containerd's hosts.toml files of a node, by registry
// dir name: every mirrored registry goes through link (the cache, under
// insecurePrefix for insecure ones) and falls back to itself; the local
// registry is the cache; an insecure registry that is not mirrored is
// pulled over plain HTTP. reg may be nil: no cache, insecure ones only.
func hostsFiles(reg *nodeRegistry, link netip.AddrPort, insecure []string) map[string]string {
	files := map[string]string{}
	isInsecure := func(h string) bool { return slices.Contains(insecure, h) }
	if reg != nil {
		mirror := "http://" + link.String()
		for _, h := range reg.Mirrors {
			m := mirror
			if isInsecure(h) {
				m += insecurePrefix
			}
			files[h] = hostsTOML(upstreamServer(h, isInsecure(h)), m)
		}
		files[reg.Local] = hostsTOML(mirror, "")
	}
	for _, h := range insecure {
		if _, ok := files[h]; !ok {
			files[h] = hostsTOML(upstreamServer(h, true), "")
		}
	}
	return files
}

// hostsTOML is one registry's hosts.toml: the mirror first, when there is
// one, then server. containerd 1.6 refuses a file without a host table
// ("invalid `host` tree"), so without a mirror server is named there too.
func hostsTOML(server, mirror string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server = %q\n", server)
	fmt.Fprintf(&b, "\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", cmp.Or(mirror, server))
	return b.String()
}

// writeHostsFiles writes the node's hosts.toml files under dir/certsDir.
func writeHostsFiles(dir string, node realNode) error {
	root := path.Join(dir, certsDir)
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	link := netip.AddrPort{}
	if node.Registry != nil {
		link = netip.AddrPortFrom(node.Network.HostIP, node.Registry.Port)
	}
	for host, content := range hostsFiles(node.Registry, link, node.InsecureRegistries) {
		d := path.Join(root, host)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path.Join(d, "hosts.toml"), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// planRegistry makes sure the host's registry cache runs, starting it if
// needed, tells it the registries the cluster names insecure, and returns
// the node's part of it. A cache that cannot start is no reason to fail
// the create (nodes then pull directly): the error comes back with a
// usable plan, for the caller to report.
func planRegistry(ctx context.Context, dir, exe string, insecure []string) (*nodeRegistry, error) {
	// The supervisor keeps it visible in its mount namespace, from its
	// own working dir: it must be absolute and exist, also when the cache
	// does not start.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s, err := registry.LoadSettings(dir)
	if err != nil {
		return nil, err
	}
	for _, h := range insecure {
		if err := registry.AllowInsecure(dir, h); err != nil {
			return nil, err
		}
	}
	reg := &nodeRegistry{Dir: dir, Mirrors: s.MirroredHosts(), Local: "localhost:" + strconv.Itoa(registry.DefaultPort)}
	d, err := registry.Ensure(ctx, dir, exe)
	if err != nil {
		return reg, err
	}
	reg.Local = "localhost:" + strconv.Itoa(int(d.Addr.Port()))
	return reg, nil
}

// bindRegistryLink binds the cluster's listener for the cache on the host
// end of its link, port first if it is free there, else any port, with
// IP_FREEBIND: the address appears on the veth only after the supervisor
// started.
func bindRegistryLink(addr netip.Addr, port uint16) (*os.File, uint16, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		})
		return errors.Join(err, serr)
	}}
	var l net.Listener
	var err error
	for _, p := range []uint16{port, 0} {
		if l, err = lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(addr, p).String()); err == nil {
			break
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("bind the registry cache's address on the cluster's link %s: %w", addr, err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		return nil, 0, err
	}
	return f, uint16(l.Addr().(*net.TCPAddr).Port), nil
}

// cacheAddrTTL is how long the supervisor trusts the cache address it read.
const cacheAddrTTL = time.Second

// serveRegistryLink splices every connection on l, the cluster's listener
// on the host end of its link, to the cache's loopback address, dialled
// with dial (in the host's network namespace). While no cache runs the
// connection is closed at once, and containerd pulls from the registry
// itself. It returns when ctx ends.
func serveRegistryLink(ctx context.Context, l net.Listener, regDir string, dial func(ctx context.Context, network, address string) (net.Conn, error)) error {
	var mu sync.Mutex
	var addr netip.AddrPort
	var read time.Time
	cacheAddr := func() (netip.AddrPort, bool) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(read) > cacheAddrTTL || !addr.IsValid() {
			addr, read = netip.AddrPort{}, time.Now()
			if d, ok, err := registry.Running(regDir); err == nil && ok {
				// The clusters' side, read-only; a daemon from before it
				// has only one.
				addr = cmp.Or(d.ClusterAddr, d.Addr)
			}
		}
		return addr, addr.IsValid()
	}
	return portproxy.AcceptEach(ctx, l, func(ctx context.Context, c net.Conn) {
		defer c.Close()
		a, ok := cacheAddr()
		if !ok {
			return
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		up, err := dial(dctx, "tcp", a.String())
		cancel()
		if err != nil {
			mu.Lock()
			addr = netip.AddrPort{} // look again next time
			mu.Unlock()
			return
		}
		defer up.Close()
		stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
		defer stop()
		portproxy.Splice(c, up)
	})
}

// registryDocs is the help link of the local registry hosting ConfigMap.
const registryDocs = "https://github.com/ephemera-dev/ephemera/blob/main/docs/registry.md"

// localRegistryHosting is the KEP-1755 document that tells tools (Tilt,
// ko, skaffold) where the cluster's local registry is.
func localRegistryHosting(reg *nodeRegistry, link netip.AddrPort) string {
	return fmt.Sprintf("host: %q\nhostFromContainerRuntime: %q\nhostFromClusterNetwork: %q\nhelp: %q\n",
		reg.Local, reg.Local, link.String(), registryDocs)
}

// ensureLocalRegistryHosting creates or updates the ConfigMap
// kube-public/local-registry-hosting (KEP-1755) of a node that pulls
// through the cache.
func ensureLocalRegistryHosting(ctx context.Context, c kubernetes.Interface, node realNode) error {
	if node.Registry == nil {
		return nil
	}
	data := map[string]string{"localRegistryHosting.v1": localRegistryHosting(node.Registry, netip.AddrPortFrom(node.Network.HostIP, node.Registry.Port))}
	cms := c.CoreV1().ConfigMaps(metav1.NamespacePublic)
	cm, err := cms.Get(ctx, "local-registry-hosting", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "local-registry-hosting", Namespace: metav1.NamespacePublic}, Data: data}, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	case maps.Equal(cm.Data, data):
		return nil
	}
	cm.Data = data
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// checkRegistryHostPort checks an insecure registry's name: HOST:PORT, as
// images name it (10.0.0.5:5000, registry.test:80).
func checkRegistryHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(s, "/ ") {
		return fmt.Errorf("%q is not HOST:PORT, like 10.0.0.5:5000 (no scheme, no path)", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 1 to 65535", s, port)
	}
	return nil
}

// warnf reports through Options.Warnf.
func (p *Provider) warnf(format string, args ...any) {
	if p.opts.Warnf != nil {
		p.opts.Warnf(format, args...)
	}
}

// restartRegistry brings a restarted cluster's part of the registry cache
// back: the cache started if it is down (a warning if it does not start:
// the node pulls directly meanwhile), the listener on the link bound again,
// on another port if the recorded one is taken (hosts.toml and the plan
// then say so). It returns the listener's file.
func (p *Provider) restartRegistry(ctx context.Context, dir string, st *clusterState) (*os.File, error) {
	reg := st.Node.Registry
	// The supervisor keeps the dir visible: it must exist, also after
	// 'registry stop --purge'.
	if err := os.MkdirAll(reg.Dir, 0o755); err != nil {
		return nil, err
	}
	if len(p.supervisor) > 0 {
		if _, err := registry.Ensure(ctx, reg.Dir, p.supervisor[0]); err != nil {
			p.warnf("the registry cache did not start, cluster %q pulls from registries directly until it does: %v", st.Name, err)
		}
	}
	f, port, err := bindRegistryLink(st.Node.Network.HostIP, reg.Port)
	if err != nil {
		return nil, err
	}
	if port != reg.Port {
		reg.Port = port
		err := writeHostsFiles(dir, *st.Node)
		if err == nil {
			err = writeJSON(filepath.Join(dir, clusterFile), *st)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("move the registry cache's listener to port %d: %w", port, err)
		}
	}
	return f, nil
}
