package testhost

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
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/netns"
)

// DefaultRange is the range New takes a test host's /30 from.
var DefaultRange = netip.MustParsePrefix("10.254.0.0/16")

// LinkPrefix starts the name of the host end of every test host's veth
// pair. It is not ephemera's own "eph-", so that tests looking for what a
// cluster left behind do not count test hosts.
const LinkPrefix = "eth-th-"

// peerLink is the test host's end of the veth pair.
const peerLink = "eth0"

// Host is a test host: a network namespace joined to the host's by a veth
// pair on a /30, the host end on its first address and the test host on
// the second, with a default route through the host.
type Host struct {
	name     string
	ns       vnetns.NsHandle
	link     string
	addr     netip.Addr
	hostSide netip.Addr
}

// New creates a test host with a /30 of DefaultRange. Name is for
// messages. The test's cleanup removes the namespace and the veth pair,
// also after a failure; a test process that dies takes them with it, as
// the namespace is held by nothing else.
func New(t testing.TB, name string) *Host {
	t.Helper()
	return NewIn(t, name, DefaultRange)
}

// NewIn is New with a /30 from r: the first one that no host interface
// address or route overlaps.
func NewIn(t testing.TB, name string, r netip.Prefix) *Host {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a test host needs root")
	}
	h := &Host{name: name, ns: vnetns.None(), link: linkName(name)}
	t.Cleanup(func() {
		if err := h.close(); err != nil {
			t.Errorf("remove test host %s: %v", name, err)
		}
	})
	if err := h.create(r); err != nil {
		t.Fatalf("create test host %s: %v", name, err)
	}
	return h
}

// Addr is the test host's address, which the host reaches directly.
func (h *Host) Addr() netip.Addr { return h.addr }

// HostSideAddr is the host's address on the link to the test host: the
// source address the test host sees for the host's traffic.
func (h *Host) HostSideAddr() netip.Addr { return h.hostSide }

// Link is the name of the host end of the veth pair.
func (h *Host) Link() string { return h.link }

// Do runs fn with its OS thread in the test host's network namespace (see
// netns.Do): sockets fn creates belong to the test host.
func (h *Host) Do(fn func() error) error { return netns.Do(h.ns, fn) }

var linkSeq atomic.Uint64

// linkName is a host link name unique on this host: 15 characters at most,
// from the name, this process and a counter.
func linkName(name string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d/%d", name, os.Getpid(), linkSeq.Add(1), time.Now().UnixNano()))
	return LinkPrefix + hex.EncodeToString(sum[:4])
}

// lockFile serialises picking a free /30 between test processes.
var lockFile = filepath.Join(os.TempDir(), "ephemera-testhost.lock")

func (h *Host) create(r netip.Prefix) error {
	if !r.Addr().Is4() || r.Bits() > 30 {
		return fmt.Errorf("range %s: want an IPv4 prefix of /30 or larger", r)
	}
	self, err := vnetns.Get()
	if err != nil {
		return fmt.Errorf("open the host's network namespace: %w", err)
	}
	defer self.Close()
	// netns.Do puts the thread back in the host's namespace after
	// New moved it into the new one.
	if err := netns.Do(self, func() error {
		var err error
		h.ns, err = vnetns.New()
		return err
	}); err != nil {
		return fmt.Errorf("create a network namespace: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lock, err := flock.Acquire(ctx, lockFile)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	subnet, err := freeSubnet(r)
	if err != nil {
		return err
	}
	h.hostSide = subnet.Addr().Next()
	h.addr = h.hostSide.Next()

	la := netlink.NewLinkAttrs()
	la.Name = h.link
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peerLink, PeerNamespace: netlink.NsFd(int(h.ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth pair %s: %w", h.link, err)
	}
	if err := setUp(&netlink.Handle{}, h.link, netip.PrefixFrom(h.hostSide, 30), netip.Addr{}); err != nil {
		return err
	}
	lock.Unlock()

	in, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		return fmt.Errorf("open netlink in the test host: %w", err)
	}
	defer in.Close()
	lo, err := in.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := in.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	if err := setUp(in, peerLink, netip.PrefixFrom(h.addr, 30), h.hostSide); err != nil {
		return fmt.Errorf("in the test host: %w", err)
	}
	return waitUp(ctx, h.link)
}

// setUp gives link its address, sets it up and, if gw is valid, routes
// everything through gw. h is a netlink handle in the link's namespace
// (the zero Handle is this process's).
func setUp(h *netlink.Handle, name string, addr netip.Prefix, gw netip.Addr) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	ipnet := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipnet}); err != nil {
		return fmt.Errorf("add address %s to %s: %w", addr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	if gw.IsValid() {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("add default route via %s: %w", gw, err)
		}
	}
	return nil
}

// waitUp waits until the host end of the veth pair has its carrier, which
// it gets when both ends are up.
func waitUp(ctx context.Context, name string) error {
	for {
		link, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if link.Attrs().OperState == netlink.OperUp {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("link %s did not come up: %w", name, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// close removes the veth pair (both ends go together) and lets go of the
// namespace, which the kernel destroys once its last socket is closed: the
// servers' cleanups, which run first, close those.
func (h *Host) close() error {
	var errs []error
	link, err := netlink.LinkByName(h.link)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
	case err != nil:
		errs = append(errs, err)
	default:
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w", h.link, err))
		}
	}
	if h.ns.IsOpen() {
		if err := h.ns.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// freeSubnet returns the first /30 of r that overlaps no address and no
// route (other than a default route) of the host.
func freeSubnet(r netip.Prefix) (netip.Prefix, error) {
	var used []netip.Prefix
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		used = append(used, prefixOf(a.IPNet))
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list host routes: %w", err)
	}
	for _, rt := range routes {
		if rt.Dst != nil && !prefixOf(rt.Dst).Addr().IsUnspecified() {
			used = append(used, prefixOf(rt.Dst))
		}
	}
	return firstFree(r.Masked(), used)
}

// firstFree returns the first /30 of r that overlaps nothing in used.
func firstFree(r netip.Prefix, used []netip.Prefix) (netip.Prefix, error) {
	base := binary.BigEndian.Uint32(r.Addr().AsSlice())
next:
	for i := range uint32(1) << (30 - r.Bits()) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+4*i)
		s := netip.PrefixFrom(netip.AddrFrom4(b), 30)
		for _, u := range used {
			if u.Overlaps(s) {
				continue next
			}
		}
		return s, nil
	}
	return netip.Prefix{}, fmt.Errorf("no free /30 left in %s", r)
}

func prefixOf(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP.To4())
	ones, bits := n.Mask.Size()
	if bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones).Masked()
}
