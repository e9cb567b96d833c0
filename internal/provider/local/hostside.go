package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ephemera-dev/ephemera/internal/provider/local/portproxy"
)

// A real-node cluster's supervisor runs in the cluster's network namespace,
// but some of its services live on the host's side: the DNS forwarder on
// the host end of the veth (it reaches the host's resolvers, loopback ones
// included), the host port mappings and the registry cache's listener. The creator, in the host's
// namespace, binds their sockets and hands them over to the supervisor as
// inherited files, in a fixed order, with a handle on the host's network
// namespace for the forwarder's queries upstream.

// Positions of the inherited files in the supervisor (fd 3 and up).
const (
	hostNetnsFD = 3 + iota
	dnsUDPFD
	dnsTCPFD
	// firstPortFD is the first host port mapping's listener; the others
	// follow in the plan's order, then the registry cache's listener.
	firstPortFD
)

// hostSideFiles binds the DNS forwarder's sockets of the cluster and
// returns, in the inherited-file order, the host's network namespace, them
// and the port mappings' sockets (see bindPorts). The caller closes the
// files once the supervisor has them.
func hostSideFiles(node *realNode, ports []*os.File) (files []*os.File, err error) {
	ns, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open the host's network namespace: %w", err)
	}
	udp, tcp, err := bindDNS(netip.AddrPortFrom(node.Network.HostIP, 53))
	if err != nil {
		ns.Close()
		return nil, err
	}
	return append([]*os.File{ns, udp, tcp}, ports...), nil
}

// bindPorts binds the host port mappings, before anything of the cluster
// exists: a busy port fails the create at once. Mappings with host port 0
// get theirs: the returned mappings have them.
func bindPorts(ms []portproxy.Mapping) ([]portproxy.Mapping, []*os.File, error) {
	bound, err := portproxy.Bind(ms)
	if err != nil {
		return nil, nil, err
	}
	var out []portproxy.Mapping
	var files []*os.File
	for _, b := range bound {
		out = append(out, b.Mapping)
		files = append(files, b.File)
	}
	return out, files, nil
}

// bindDNS binds the forwarder's UDP and TCP sockets on addr, with
// IP_FREEBIND: the address appears on the veth only after the supervisor
// started.
func bindDNS(addr netip.AddrPort) (udp, tcp *os.File, err error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	ctx := context.Background()
	pc, err := lc.ListenPacket(ctx, "udp4", addr.String())
	if err != nil {
		return nil, nil, fmt.Errorf("bind the cluster's DNS forwarder on %s/udp: %w", addr, err)
	}
	defer pc.Close()
	l, err := lc.Listen(ctx, "tcp4", addr.String())
	if err != nil {
		return nil, nil, fmt.Errorf("bind the cluster's DNS forwarder on %s/tcp: %w", addr, err)
	}
	defer l.Close()
	if udp, err = pc.(*net.UDPConn).File(); err != nil {
		return nil, nil, err
	}
	if tcp, err = l.(*net.TCPListener).File(); err != nil {
		udp.Close()
		return nil, nil, err
	}
	return udp, tcp, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// inherited are the files a cluster's supervisor was given: a real node's
// host-side sockets, and the advertised address's socket last, when the
// cluster has one (the only file of a supervisor without a real node).
type inherited struct {
	hostNetns, dnsUDP, dnsTCP *os.File
	ports                     []*os.File
	// registry is the registry cache's listener on the host end of the
	// link, after the ports, when the node pulls through the cache.
	registry  *os.File
	advertise *os.File
}

// takeInheritedFiles returns the files the supervisor was given, marked
// close-on-exec so that the processes it starts do not inherit them.
func takeInheritedFiles(st clusterState) inherited {
	f := func(fd int) *os.File {
		syscall.CloseOnExec(fd)
		return os.NewFile(uintptr(fd), "inherited-"+strconv.Itoa(fd))
	}
	var in inherited
	next := hostNetnsFD
	if node := st.Node; node != nil {
		in = inherited{hostNetns: f(hostNetnsFD), dnsUDP: f(dnsUDPFD), dnsTCP: f(dnsTCPFD)}
		for i := range node.HostPorts {
			in.ports = append(in.ports, f(firstPortFD+i))
		}
		next = firstPortFD + len(node.HostPorts)
		if node.Registry != nil {
			in.registry = f(next)
			next++
		}
	}
	if st.Advertise != nil {
		in.advertise = f(next)
	}
	return in
}
