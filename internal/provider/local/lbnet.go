package local

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/ephemera-dev/ephemera/internal/provider/local/loadbalancer"
	"golang.org/x/sys/unix"
)

// LBNetworkEnv overrides DefaultLBNetwork.
const LBNetworkEnv = "EPHEMERA_LB_NETWORK"

// DefaultLBNetwork is the range clusters take their LoadBalancer addresses
// from: a /28 each, which the host routes into a real-node cluster's
// network namespace (a simulated-node cluster's addresses show in status
// only). Its first address is the cluster's ingress address.
const DefaultLBNetwork = "10.251.0.0/16"

// lbBits is the size of a cluster's LoadBalancer range.
const lbBits = 28

// ParseLBNetwork checks a LoadBalancer range: an IPv4 CIDR with room for at
// least one /28.
func ParseLBNetwork(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Bits() > lbBits {
		return netip.Prefix{}, fmt.Errorf("LoadBalancer network %q: want an IPv4 CIDR of /%d or larger, like %s", s, lbBits, DefaultLBNetwork)
	}
	return p.Masked(), nil
}

// ingressAddress is the first address of a cluster's LoadBalancer range.
func ingressAddress(lb netip.Prefix) netip.Addr { return loadbalancer.IngressAddr(lb) }

// hostRoute is a route of the host, as allocation sees it.
type hostRoute struct {
	Dst netip.Prefix
	// Dev is the interface it goes through.
	Dev string
}

// checkLBNetwork refuses a LoadBalancer range that collides with the
// host's own networks: an address of an interface, or a route that is not
// a default route and not one of ephemera's (through an eph- veth).
func checkLBNetwork(lb netip.Prefix, addrs []netip.Prefix, routes []hostRoute) error {
	for _, a := range addrs {
		if a.Masked().Overlaps(lb) {
			return fmt.Errorf("the LoadBalancer network %s overlaps the host's network %s: choose another with --lb-network or %s", lb, a.Masked(), LBNetworkEnv)
		}
	}
	for _, r := range routes {
		if r.Dst.Bits() == 0 || strings.HasPrefix(r.Dev, "eph-") {
			continue
		}
		if r.Dst.Overlaps(lb) {
			return fmt.Errorf("the LoadBalancer network %s overlaps the host's route to %s (via %s): choose another with --lb-network or %s", lb, r.Dst, r.Dev, LBNetworkEnv)
		}
	}
	return nil
}

// allocateLB picks a free /28 in lb: one that no host address or route
// covers (real-node clusters' ranges, of any state dir, are routes through
// their veths) and that no cluster of clustersDir holds (a simulated-node
// cluster's range is routed nowhere, see allocateStatusLB). It takes the
// lowest one. The caller holds lockHostNetwork until the route is in
// (addLBRoute).
func allocateLB(lb netip.Prefix, clustersDir string) (netip.Prefix, error) {
	used, err := usedLBRanges(lb, clustersDir)
	if err != nil {
		return netip.Prefix{}, err
	}
	s, ok := freePrefix(lb, lbBits, used)
	if !ok {
		return netip.Prefix{}, errLBFull(lb)
	}
	return s, nil
}

// allocateStatusLB picks the range of a cluster with simulated nodes only,
// whose LoadBalancer Services get addresses in their status and nothing
// else: no route, no host rule, nothing to remove but its plan. Like
// allocateLB it avoids the host's networks, real-node clusters' routes and
// this state dir's ranges, but it takes the highest free /28, so that real
// nodes of other state dirs, which cannot see it and take the lowest, do
// not take it too until lb is nearly full. The caller holds the state
// dir's ports lock until the plan is written (see planCluster).
func allocateStatusLB(lb netip.Prefix, clustersDir string) (netip.Prefix, error) {
	used, err := usedLBRanges(lb, clustersDir)
	if err != nil {
		return netip.Prefix{}, err
	}
	s, ok := lastFreePrefix(lb, lbBits, used)
	if !ok {
		return netip.Prefix{}, errLBFull(lb)
	}
	return s, nil
}

func errLBFull(lb netip.Prefix) error {
	return fmt.Errorf("no free /%d left in the LoadBalancer network %s: delete clusters, or set a larger range with --lb-network or %s", lbBits, lb, LBNetworkEnv)
}

// usedLBRanges checks lb against the host's networks and returns what is
// taken: the host's routes other than default routes, and the LoadBalancer
// ranges of the clusters in clustersDir.
func usedLBRanges(lb netip.Prefix, clustersDir string) ([]netip.Prefix, error) {
	addrs, err := hostAddresses()
	if err != nil {
		return nil, err
	}
	routes, err := hostRoutes()
	if err != nil {
		return nil, err
	}
	if err := checkLBNetwork(lb, addrs, routes); err != nil {
		return nil, err
	}
	used := make([]netip.Prefix, 0, len(routes))
	for _, r := range routes {
		if r.Dst.Bits() > 0 {
			used = append(used, r.Dst)
		}
	}
	return append(used, clusterLBRanges(clustersDir)...), nil
}

// clusterLBRanges returns the LoadBalancer ranges the plans in clustersDir
// hold, real-node and simulated-node clusters' alike.
func clusterLBRanges(clustersDir string) []netip.Prefix {
	entries, _ := os.ReadDir(clustersDir)
	var out []netip.Prefix
	for _, e := range entries {
		var st clusterState
		if err := readJSON(filepath.Join(clustersDir, e.Name(), clusterFile), &st); err != nil {
			continue
		}
		if lb := st.lbRange(); lb.IsValid() {
			out = append(out, lb)
		}
	}
	return out
}

// checkLBFree fails when a host route covers lb, the range a stopped
// cluster was created with and gets back on restart.
func checkLBFree(lb netip.Prefix) error {
	routes, err := hostRoutes()
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst.Bits() > 0 && r.Dst.Overlaps(lb) {
			return fmt.Errorf("the cluster's LoadBalancer range %s is taken by the host's route to %s (via %s): delete the cluster and create it again", lb, r.Dst, r.Dev)
		}
	}
	return nil
}

// hostRoutes lists the IPv4 routes of the main table.
func hostRoutes() ([]hostRoute, error) {
	rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	names := map[int]string{}
	links, _ := netlink.LinkList()
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []hostRoute
	for _, r := range rs {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Dst != nil {
			addr, ok := netip.AddrFromSlice(r.Dst.IP.To4())
			if !ok {
				continue
			}
			ones, _ := r.Dst.Mask.Size()
			dst = netip.PrefixFrom(addr, ones)
		}
		out = append(out, hostRoute{Dst: dst, Dev: names[r.LinkIndex]})
	}
	return out, nil
}

// addLBRoute routes the cluster's LoadBalancer range to its node through
// its veth. The route goes with the veth.
func addLBRoute(nn nodeNetwork, lb netip.Prefix) error {
	link, err := netlink.LinkByName(nn.Veth)
	if err != nil {
		return fmt.Errorf("find the cluster's veth %s: %w", nn.Veth, err)
	}
	err = netlink.RouteReplace(&netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       prefixNet(lb),
		Gw:        nn.NodeIP.AsSlice(),
	})
	if err != nil {
		return fmt.Errorf("route the LoadBalancer range %s to the cluster: %w", lb, err)
	}
	return nil
}

// routeInsideNetns sets the routes of the cluster's network namespace, from
// inside it: the default route through the host end of the veth, and the
// LoadBalancer range as local, so that an address no Service holds (which
// kube-proxy did not rewrite) refuses at once instead of looping between
// host and cluster.
func routeInsideNetns(nn nodeNetwork, lb netip.Prefix) error {
	eth, err := netlink.LinkByName(nodeInterface)
	if err != nil {
		return fmt.Errorf("find %s: %w", nodeInterface, err)
	}
	// The creator brings it up too, maybe not yet: a route through a
	// link that is down is refused.
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring %s up: %w", nodeInterface, err)
	}
	err = netlink.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: nn.HostIP.AsSlice()})
	if err != nil {
		return fmt.Errorf("add the default route through the host (%s): %w", nn.HostIP, err)
	}
	if !lb.IsValid() {
		return nil
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	err = netlink.RouteReplace(&netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       prefixNet(lb),
		Type:      unix.RTN_LOCAL,
		Table:     unix.RT_TABLE_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("make the LoadBalancer range %s local: %w", lb, err)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
