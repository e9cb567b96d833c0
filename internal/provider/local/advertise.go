package local

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr/funcr"
	vnetns "github.com/vishvananda/netns"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/internal/netns"
	"github.com/ephemera-dev/ephemera/internal/provider/local/sniroute"
)

// Clusters reachable from other machines: with an advertised address
// (--advertise-address HOST[:PORT]) every cluster's supervisor listens on
// that one address and port, all of them on the same socket address
// (SO_REUSEPORT), and routes each TLS connection by its server name (SNI)
// to the API server of the cluster that name belongs to, whichever cluster
// of the state dir it is: TLS passes through untouched, so a client
// verifies the cluster's own CA, and another cluster's kubeconfig fails at
// TLS. Kubeconfigs handed out name the advertised address and the
// cluster's server name.

// DefaultAdvertisePort is the port of an advertised address given without one.
const DefaultAdvertisePort = 6443

// advertised is how a cluster is reached from other machines.
type advertised struct {
	// Address is the host address and port clients connect to.
	Address netip.AddrPort `json:"address"`
	// ServerName is the cluster's name in TLS (SNI) and in its API
	// server's certificate: <cluster>.<domain>.
	ServerName string `json:"serverName"`
	// RouteAlso are other clusters dirs whose clusters share the address
	// (see Options.AdvertiseWith).
	RouteAlso []string `json:"routeAlso,omitempty"`
}

// ParseAdvertise reads HOST[:PORT] (PORT defaults to DefaultAdvertisePort)
// and checks that HOST is one of addrs, the host's addresses: a client on
// another machine must be able to reach it, so neither an unspecified
// address nor one the host does not have will do.
func ParseAdvertise(s string, addrs []netip.Prefix) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.AddrPort{}, fmt.Errorf("--advertise-address %q: want HOST or HOST:PORT with HOST an IP address of this host, like 192.0.2.10 or 192.0.2.10:6443", s)
		}
		ap = netip.AddrPortFrom(a, DefaultAdvertisePort)
	}
	a := ap.Addr().Unmap()
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("--advertise-address %s: port 0: give the port clients connect to (default %d)", s, DefaultAdvertisePort)
	}
	if a.IsUnspecified() || a.IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("--advertise-address %s: other machines cannot reach %s: give an address of one of this host's interfaces", s, a)
	}
	if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr().Unmap() == a }) {
		var have []string
		for _, p := range addrs {
			if !p.Addr().IsLoopback() {
				have = append(have, p.Addr().String())
			}
		}
		return netip.AddrPort{}, fmt.Errorf("--advertise-address %s: %s is not an address of this host (it has %s)", s, a, strings.Join(have, ", "))
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

// apiServerName is a cluster's server name: <cluster>.<domain> with the
// provider's domain, else <cluster>.<a-b-c-d>.<base>, a wildcard-DNS name
// of the advertised address (like demo.192-0-2-10.sslip.io).
func apiServerName(cluster, domain, base string, addr netip.Addr) string {
	if domain != "" {
		return cluster + "." + domain
	}
	return cluster + "." + strings.NewReplacer(".", "-", ":", "-").Replace(addr.String()) + "." + cmp.Or(base, DefaultIngressDomainBase)
}

// advertiseKubeconfig points a kubeconfig's clusters at the advertised
// address: server https://<server name>:<port> when that name resolves to
// the address (resolves says), else https://<address>:<port> with the
// server name as tls-server-name. The CA stays the cluster's own.
func advertiseKubeconfig(kubeconfig []byte, a advertised, resolves func(name string, addr netip.Addr) bool) ([]byte, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(int(a.Address.Port()))
	for _, c := range cfg.Clusters {
		if resolves(a.ServerName, a.Address.Addr()) {
			c.Server, c.TLSServerName = "https://"+net.JoinHostPort(a.ServerName, port), ""
		} else {
			c.Server, c.TLSServerName = "https://"+net.JoinHostPort(a.Address.Addr().String(), port), a.ServerName
		}
	}
	return clientcmd.Write(*cfg)
}

// resolvesTo tells whether name resolves to addr, asking for at most a
// second. Names under the TLDs reserved for tests and local use (RFC 2606,
// RFC 6761, .internal) resolve nowhere public: they are not looked up.
func resolvesTo(name string, addr netip.Addr) bool {
	if reservedName(name) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	return err == nil && slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a.Unmap() == addr })
}

// advertisedBackendsTTL is how long advertisedBackends trusts what it read.
const advertisedBackendsTTL = 2 * time.Second

// advertisedBackends returns the router's lookup: the API server (host:port)
// of the cluster of clustersDirs whose server name is the one asked for.
// Every cluster's supervisor routes every cluster, so whichever of them the
// kernel hands a connection to routes it right.
func advertisedBackends(clustersDirs []string) func(ctx context.Context, serverName string) (string, bool) {
	var mu sync.Mutex
	var read time.Time
	var backends map[string]string
	return func(_ context.Context, serverName string) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		name := strings.ToLower(strings.TrimSuffix(serverName, "."))
		// A name not known yet may be a new cluster's: read again, but
		// not more than every 100 ms, whatever clients send.
		if _, ok := backends[name]; time.Since(read) > advertisedBackendsTTL || !ok && time.Since(read) > 100*time.Millisecond {
			backends, read = map[string]string{}, time.Now()
			for _, d := range clustersDirs {
				maps.Copy(backends, readAdvertised(d))
			}
		}
		b, ok := backends[name]
		return b, ok
	}
}

// readAdvertised maps the server name of every advertised cluster of
// clustersDir to its API server's host:port.
func readAdvertised(clustersDir string) map[string]string {
	entries, _ := os.ReadDir(clustersDir)
	out := map[string]string{}
	for _, e := range entries {
		var st clusterState
		if err := readJSON(filepath.Join(clustersDir, e.Name(), clusterFile), &st); err != nil || st.Advertise == nil {
			continue
		}
		if host := strings.TrimPrefix(st.Endpoint, "https://"); host != st.Endpoint {
			out[st.Advertise.ServerName] = host
		}
	}
	return out
}

// routeAdvertised serves the advertised address on the socket the creator
// bound (see sniroute.Listen) until ctx ends, routing to the API servers of
// all advertised clusters of the state dir. A real node's supervisor dials
// them from the host's network namespace, where every cluster is reached.
func (s *supervisor) routeAdvertised(ctx context.Context, files inherited) error {
	ln, err := net.FileListener(files.advertise)
	files.advertise.Close()
	if err != nil {
		return fmt.Errorf("the advertised address's socket: %w", err)
	}
	dial := (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	if files.hostNetns != nil {
		dial = netns.Dialer(vnetns.NsHandle(files.hostNetns.Fd()))
	}
	r := &sniroute.Router{
		Lookup: advertisedBackends(append([]string{filepath.Dir(s.dir)}, s.state.Advertise.RouteAlso...)),
		Dial:   dial,
		Log:    funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, "advertise:", prefix, args) }, funcr.Options{}),
	}
	go func() {
		if err := r.Serve(ctx, ln); err != nil {
			fmt.Fprintf(os.Stderr, "advertise: the router stopped: %v\n", err)
		}
		runtime.KeepAlive(files.hostNetns)
	}()
	return nil
}

// reservedName tells whether name is under a TLD that public DNS never
// answers: test, example, invalid, localhost, local, internal.
func reservedName(name string) bool {
	tld := strings.ToLower(strings.TrimSuffix(name, "."))
	if i := strings.LastIndexByte(tld, '.'); i >= 0 {
		tld = tld[i+1:]
	}
	switch tld {
	case "test", "example", "invalid", "localhost", "local", "internal":
		return true
	}
	return false
}
