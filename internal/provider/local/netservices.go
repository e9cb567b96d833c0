package local

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/ephemera-dev/ephemera/internal/netns"
	"github.com/ephemera-dev/ephemera/internal/provider/local/hostdns"
	"github.com/ephemera-dev/ephemera/internal/provider/local/loadbalancer"
	"github.com/ephemera-dev/ephemera/internal/provider/local/portproxy"
)

// hostResolvConf is where the host names its resolvers.
const hostResolvConf = "/etc/resolv.conf"

// dnsUpstreams returns where the cluster's DNS forwarder sends external
// names: the template's or provider's upstreams, else the host's resolvers.
// It reads the host's resolv.conf, so it runs before prepareNode covers it.
func dnsUpstreams(node *realNode) ([]netip.AddrPort, error) {
	if len(node.DNSUpstreams) > 0 {
		return node.DNSUpstreams, nil
	}
	return hostdns.ResolvConfNameservers(hostResolvConf)
}

// startNetServices starts the real node's services on the host's side,
// on the sockets the creator handed over (see hostSideFiles): the DNS
// forwarder on the host end of the veth, the registry cache's listener
// there and the host port mappings. They
// run until ctx ends.
func (s *supervisor) startNetServices(ctx context.Context, files inherited, upstreams []netip.AddrPort) error {
	node := s.state.Node
	hostNS, dnsUDP, dnsTCP, ports := files.hostNetns, files.dnsUDP, files.dnsTCP, files.ports
	pc, err := net.FilePacketConn(dnsUDP)
	dnsUDP.Close()
	if err != nil {
		return fmt.Errorf("the DNS forwarder's UDP socket: %w", err)
	}
	l, err := net.FileListener(dnsTCP)
	dnsTCP.Close()
	if err != nil {
		pc.Close()
		return fmt.Errorf("the DNS forwarder's TCP socket: %w", err)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "dns: "+format+"\n", args...) }
	if len(upstreams) == 0 {
		logf("no upstream resolver: external names will not resolve")
	}
	go func() {
		cfg := hostdns.Config{
			Upstreams: upstreams,
			Dial:      netns.Dialer(vnetns.NsHandle(hostNS.Fd())),
			Local:     localNames(filepath.Dir(s.dir)),
			Logf:      logf,
		}
		if len(cfg.Upstreams) == 0 {
			// Answer the local names all the same; the rest fails.
			cfg.Upstreams = []netip.AddrPort{netip.AddrPortFrom(netip.IPv4Unspecified(), 53)}
		}
		if err := hostdns.Serve(ctx, pc, l, cfg); err != nil {
			logf("the DNS forwarder stopped: %v", err)
		}
		// Dial holds only its descriptor: keep the file from being
		// collected, and closed, while the forwarder runs.
		runtime.KeepAlive(hostNS)
	}()
	if files.registry != nil {
		l, err := net.FileListener(files.registry)
		files.registry.Close()
		if err != nil {
			return fmt.Errorf("the registry cache's socket: %w", err)
		}
		go func() {
			if err := serveRegistryLink(ctx, l, node.Registry.Dir, netns.Dialer(vnetns.NsHandle(hostNS.Fd()))); err != nil {
				fmt.Fprintf(os.Stderr, "registry: the cache's listener stopped: %v\n", err)
			}
			runtime.KeepAlive(hostNS)
		}()
	}
	ingress := ingressAddress(node.LB)
	s.startLoadBalancer(ctx, node.LB)
	for i, m := range node.HostPorts {
		go func() {
			if err := (&portproxy.Proxy{}).Serve(ctx, m, ports[i], ingress); err != nil {
				fmt.Fprintf(os.Stderr, "port mapping %s stopped: %v\n", m, err)
			}
		}()
	}
	return nil
}

// startLoadBalancer runs the LoadBalancer controller on the cluster's
// range lb, if it has one, until ctx ends.
func (s *supervisor) startLoadBalancer(ctx context.Context, lb netip.Prefix) {
	if !lb.IsValid() {
		return
	}
	go func() {
		cfg := loadbalancer.Config{Range: lb, Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "loadbalancer: "+format+"\n", args...)
		}}
		if err := loadbalancer.Run(ctx, s.watchClient, cfg); err != nil {
			fmt.Fprintf(os.Stderr, "loadbalancer: stopped: %v\n", err)
		}
	}()
}

// localNamesTTL is how long localNames trusts what it read.
const localNamesTTL = 2 * time.Second

// localNames answers *.<cluster>.<domain> with the ingress address of every
// cluster in clustersDir that has a local domain, so that one forwarder
// answers for all of this state dir's clusters (the host's resolver needs
// to ask only one).
func localNames(clustersDir string) func(name string) (netip.Addr, bool) {
	var mu sync.Mutex
	var read time.Time
	var matchers []func(string) (netip.Addr, bool)
	return func(name string) (netip.Addr, bool) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(read) > localNamesTTL {
			matchers, read = clusterDomains(clustersDir), time.Now()
		}
		for _, m := range matchers {
			if a, ok := m(name); ok {
				return a, true
			}
		}
		return netip.Addr{}, false
	}
}

// clusterDomains returns a matcher per cluster of clustersDir with a local
// domain.
func clusterDomains(clustersDir string) []func(string) (netip.Addr, bool) {
	entries, _ := os.ReadDir(clustersDir)
	var out []func(string) (netip.Addr, bool)
	for _, e := range entries {
		var st clusterState
		if err := readJSON(filepath.Join(clustersDir, e.Name(), clusterFile), &st); err != nil {
			continue
		}
		if n := st.Node; n != nil && n.LocalDomain != "" && n.LB.IsValid() {
			out = append(out, hostdns.Wildcard(n.IngressDomain, ingressAddress(n.LB)))
		}
	}
	return out
}
