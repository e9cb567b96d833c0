package local

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ephemera-dev/ephemera/internal/exec"
)

// HostNetworkEnv overrides DefaultHostNetwork.
const HostNetworkEnv = "EPHEMERA_HOST_NETWORK"

// DefaultHostNetwork is the host-side range real-node clusters take their
// addresses from: a /30 each, the host end of the veth on the first address
// and the cluster (API server, node) on the second.
const DefaultHostNetwork = "10.250.0.0/16"

// hostNames are the names a real-node cluster's host objects carry. They
// derive from the cluster dir alone, so a delete finds them even when the
// create died before writing anything down.
type hostNames struct {
	// Veth is the host end of the veth pair (at most 15 characters).
	Veth string `json:"veth"`
	// Cgroup is the cgroup (in every hierarchy) everything of the cluster
	// runs under, pods included.
	Cgroup string `json:"cgroup"`
}

func namesFor(dir string) hostNames {
	sum := sha256.Sum256([]byte(dir))
	id := hex.EncodeToString(sum[:5])
	return hostNames{Veth: "eph-" + id, Cgroup: "ephemera-" + id}
}

// nodeNetwork is where a real-node cluster lives on the host. The cluster
// has a network namespace of its own, which its supervisor creates when it
// starts (see startSupervisor) and which lives as long as any process of
// the cluster: it is never named or mounted, so it cannot outlive the
// cluster. A veth pair joins it to the host.
type nodeNetwork struct {
	hostNames
	// Subnet is the /30 of the veth pair.
	Subnet netip.Prefix `json:"subnet"`
	// HostIP is the host end's address.
	HostIP netip.Addr `json:"hostIP"`
	// NodeIP is the cluster end's address: the node's InternalIP and where
	// the API server listens.
	NodeIP netip.Addr `json:"nodeIP"`
}

// nodeInterface is the cluster end of the veth pair, in the cluster's
// network namespace.
const nodeInterface = "eth0"

// ParseHostNetwork checks a host-side range: an IPv4 CIDR with room for at
// least one /30.
func ParseHostNetwork(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("host network %q: want an IPv4 CIDR of /30 or larger, like %s", s, DefaultHostNetwork)
	}
	return p.Masked(), nil
}

// allocateNodeNetwork picks a free /30 in hostRange: one that overlaps no
// address of any host interface. The caller holds lockHostNetwork until the
// veth has its address (attachNodeNetwork), so concurrent creates from any
// state dir never pick the same one.
func allocateNodeNetwork(dir string, hostRange netip.Prefix) (nodeNetwork, error) {
	used, err := hostAddresses()
	if err != nil {
		return nodeNetwork{}, err
	}
	nn := nodeNetwork{hostNames: namesFor(dir)}
	if nn.Subnet, err = freeSubnet(hostRange, used); err != nil {
		return nodeNetwork{}, err
	}
	nn.HostIP = nn.Subnet.Addr().Next()
	nn.NodeIP = nn.HostIP.Next()
	return nn, nil
}

// attachNodeNetwork creates the veth pair between the host and the network
// namespace of process pid (the cluster's supervisor), with addresses, and
// brings both ends up. The supervisor waits for its end (waitNodeAddress).
func attachNodeNetwork(ctx context.Context, nn nodeNetwork, pid int) error {
	bits := fmt.Sprintf("/%d", nn.Subnet.Bits())
	in := []string{"nsenter", "--target", strconv.Itoa(pid), "--net", "--", "ip"}
	steps := [][]string{
		{"ip", "link", "add", nn.Veth, "type", "veth", "peer", "name", nodeInterface, "netns", strconv.Itoa(pid)},
		{"ip", "addr", "add", nn.HostIP.String() + bits, "dev", nn.Veth},
		{"ip", "link", "set", nn.Veth, "up"},
		append(in, "link", "set", "lo", "up"),
		append(in, "addr", "add", nn.NodeIP.String()+bits, "dev", nodeInterface),
		append(in, "link", "set", nodeInterface, "up"),
	}
	for _, s := range steps {
		if err := exec.Command(ctx, s[0], s[1:]...).Run(); err != nil {
			return fmt.Errorf("connect the cluster's network namespace to the host: %w", err)
		}
	}
	return nil
}

// waitNodeAddress waits until this process's network namespace has addr,
// which the creator adds from outside (attachNodeNetwork).
func waitNodeAddress(ctx context.Context, addr netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, supervisorStartTimeout)
	defer cancel()
	for {
		addrs, _ := hostAddresses()
		for _, a := range addrs {
			if a.Contains(addr) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the node address %s did not appear on %s: %w", addr, nodeInterface, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// freeSubnet returns the first /30 of hostRange that overlaps no network
// in used.
func freeSubnet(hostRange netip.Prefix, used []netip.Prefix) (netip.Prefix, error) {
	s, ok := freePrefix(hostRange, 30, used)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("no free /30 left in the host network %s: delete clusters, or set a larger range with %s", hostRange, HostNetworkEnv)
	}
	return s, nil
}

// freePrefix returns the first prefix of the given length in r that
// overlaps no network in used.
func freePrefix(r netip.Prefix, bits int, used []netip.Prefix) (netip.Prefix, bool) {
	if !r.Addr().Is4() || bits < r.Bits() || bits > 32 {
		return netip.Prefix{}, false
	}
	base := binary.BigEndian.Uint32(r.Addr().AsSlice())
	size := uint32(1) << (32 - bits)
	for i := range uint64(1) << (bits - r.Bits()) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+size*uint32(i))
		s := netip.PrefixFrom(netip.AddrFrom4(b), bits)
		if !overlapsAny(s, used) {
			return s, true
		}
	}
	return netip.Prefix{}, false
}

// lastFreePrefix returns the last prefix of the given length in r that
// overlaps no network in used.
func lastFreePrefix(r netip.Prefix, bits int, used []netip.Prefix) (netip.Prefix, bool) {
	if !r.Addr().Is4() || bits < r.Bits() || bits > 32 {
		return netip.Prefix{}, false
	}
	base := binary.BigEndian.Uint32(r.Addr().AsSlice())
	size := uint32(1) << (32 - bits)
	for i := uint64(1) << (bits - r.Bits()); i > 0; i-- {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+size*uint32(i-1))
		s := netip.PrefixFrom(netip.AddrFrom4(b), bits)
		if !overlapsAny(s, used) {
			return s, true
		}
	}
	return netip.Prefix{}, false
}

func overlapsAny(s netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if u.Overlaps(s) {
			return true
		}
	}
	return false
}

// checkSubnetFree fails when an interface of this host has an address that
// overlaps subnet, the /30 a stopped real-node cluster was created with and
// must get back: its node address is in the cluster's certificates.
func checkSubnetFree(subnet netip.Prefix) error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list host interfaces: %w", err)
	}
	for _, iface := range ifaces {
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if used, ok := ipv4Network(a); ok && used.Overlaps(subnet) {
				return fmt.Errorf("the cluster's node network %s is taken: host interface %s has the address %s; the node's address is in the cluster's certificates, so delete the cluster and create it again", subnet, iface.Name, used)
			}
		}
	}
	return nil
}

// hostAddresses returns the IPv4 networks of every host interface.
func hostAddresses() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if n, ok := ipv4Network(a); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// ipv4Network returns an interface's IPv4 address with its prefix length.
func ipv4Network(a net.Addr) (netip.Prefix, bool) {
	n, ok := a.(*net.IPNet)
	if !ok {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(addr, ones), true
}

// hostNetworkLock is locked (flock) while a create picks and sets up its
// network. It is a dir every host has, so no lock file is left behind.
const hostNetworkLock = "/run"

// lockHostNetwork takes the host-wide network lock.
func lockHostNetwork(ctx context.Context) (func(), error) {
	f, err := os.Open(hostNetworkLock)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", hostNetworkLock, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for another create to set up its network: %w", ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// teardownHostNetwork deletes the host end of the cluster's veth pair if
// it is still there. The namespace, and with it the other end, the pod
// bridge and the iptables rules, went when the cluster's last process did.
func teardownHostNetwork(ctx context.Context, names hostNames) error {
	if _, err := net.InterfaceByName(names.Veth); err != nil {
		return nil
	}
	err := exec.Command(ctx, "ip", "link", "del", names.Veth).Run()
	if _, gone := net.InterfaceByName(names.Veth); err != nil && gone != nil {
		// The kernel destroys a dead namespace, and the veth with it,
		// a moment after its last process: it went meanwhile.
		return nil
	}
	return err
}
