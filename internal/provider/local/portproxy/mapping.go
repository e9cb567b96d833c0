package portproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Protocols of a Mapping.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"
)

// defaultAddress is the host address of a mapping that names none, 127.0.0.1:
// only this host reaches it.
func defaultAddress() netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, 1}) }

// form is the grammar of a mapping, shown in every Parse error.
const form = "want [ADDR:]HOSTPORT:PORT[/tcp|/udp], like 8080:80 or 0.0.0.0:2222:22/tcp"

// Mapping forwards a host port to a port of the cluster's ingress address.
type Mapping struct {
	// Address is the host address to listen on: 127.0.0.1 by default,
	// 0.0.0.0 or :: for every address of the host.
	Address netip.Addr `json:"address"`
	// HostPort is the port on the host; 0 picks a free one when bound.
	HostPort uint16 `json:"hostPort"`
	// Port is the port of the ingress address to forward to, 1-65535.
	Port uint16 `json:"port"`
	// Protocol is ProtocolTCP or ProtocolUDP.
	Protocol string `json:"protocol"`
}

// Parse parses [ADDR:]HOSTPORT:PORT[/tcp|/udp], the value of a --port flag.
// ADDR is an IP address, IPv6 in brackets ([::1]:8443:443); it defaults to
// 127.0.0.1 and the protocol to tcp. HOSTPORT 0 picks a free port.
func Parse(s string) (Mapping, error) {
	m, err := parse(s)
	if err != nil {
		return Mapping{}, fmt.Errorf("--port %q: %w (%s)", s, err, form)
	}
	return m, nil
}

func parse(s string) (Mapping, error) {
	m := Mapping{Address: defaultAddress(), Protocol: ProtocolTCP}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		m.Protocol = strings.ToLower(rest[i+1:])
		if m.Protocol != ProtocolTCP && m.Protocol != ProtocolUDP {
			return Mapping{}, fmt.Errorf("protocol %q is neither tcp nor udp", rest[i+1:])
		}
		rest = rest[:i]
	}
	if rest == "" {
		return Mapping{}, errors.New("empty mapping")
	}
	var addr string
	hasAddr := false
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 || !strings.HasPrefix(rest[end+1:], ":") {
			return Mapping{}, errors.New("an address in brackets must be followed by :HOSTPORT:PORT")
		}
		addr, rest, hasAddr = rest[1:end], rest[end+2:], true
		if !strings.Contains(addr, ":") {
			return Mapping{}, fmt.Errorf("brackets are for IPv6 addresses; write %s without them", addr)
		}
	}
	parts := strings.Split(rest, ":")
	switch {
	case len(parts) == 3 && !hasAddr:
		addr, hasAddr = parts[0], true
		parts = parts[1:]
	case len(parts) > 3 && !hasAddr && isIPv6(strings.Join(parts[:len(parts)-2], ":")):
		return Mapping{}, errors.New("an IPv6 address must be in brackets, like [::1]:8443:443")
	case len(parts) != 2:
		return Mapping{}, errors.New("want two or three fields separated by ':'")
	}
	if hasAddr {
		a, err := parseAddr(addr)
		if err != nil {
			return Mapping{}, err
		}
		m.Address = a
	}
	hostPort, err := parsePort("HOSTPORT", parts[0], 0)
	if err != nil {
		return Mapping{}, err
	}
	port, err := parsePort("PORT", parts[1], 1)
	if err != nil {
		return Mapping{}, err
	}
	m.HostPort, m.Port = hostPort, port
	return m, nil
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}

func parseAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, errors.New("ADDR is empty; leave it out for 127.0.0.1")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ADDR %q is not an IP address", s)
	}
	a = a.Unmap()
	if err := checkAddr(a); err != nil {
		return netip.Addr{}, err
	}
	return a, nil
}

// checkAddr refuses addresses a host port cannot be bound to.
func checkAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("no address")
	case a.Zone() != "":
		return fmt.Errorf("address %s has a zone; zones are not supported", a)
	case a.Is4In6():
		return fmt.Errorf("address %s is IPv4-mapped; write it as %s", a, a.Unmap())
	case a.IsMulticast():
		return fmt.Errorf("address %s is a multicast address", a)
	}
	return nil
}

func parsePort(name, s string, lowest uint64) (uint16, error) {
	if strings.Contains(s, "-") {
		return 0, fmt.Errorf("%s %q: port ranges are not supported", name, s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n < lowest {
		return 0, fmt.Errorf("%s %q is not a port number from %d to 65535", name, s, lowest)
	}
	return uint16(n), nil
}

// String returns m as Parse reads it: ADDR:HOSTPORT:PORT/PROTOCOL, IPv6
// addresses in brackets.
func (m Mapping) String() string {
	var b strings.Builder
	if m.Address.IsValid() {
		if m.Address.Is6() {
			b.WriteString("[" + m.Address.String() + "]:")
		} else {
			b.WriteString(m.Address.String() + ":")
		}
	}
	fmt.Fprintf(&b, "%d:%d", m.HostPort, m.Port)
	if m.Protocol != "" {
		b.WriteString("/" + m.Protocol)
	}
	return b.String()
}

// hostPort returns the host side of m, ADDR:HOSTPORT, with /udp added for UDP.
func (m Mapping) hostPort() string {
	s := netip.AddrPortFrom(m.Address, m.HostPort).String()
	if m.Protocol == ProtocolUDP {
		s += "/udp"
	}
	return s
}

// Check validates mappings that did not come from Parse (a template, the
// API) and refuses two that cannot both be bound: one protocol and host
// port on the same address, or on an unspecified address (0.0.0.0, ::) and
// any address of its family. Host port 0 never collides.
func Check(ms []Mapping) error {
	for _, m := range ms {
		if err := checkAddr(m.Address); err != nil {
			return fmt.Errorf("port mapping %s: %w", m, err)
		}
		if m.Port == 0 {
			return fmt.Errorf("port mapping %s: PORT 0 is not a port to forward to", m)
		}
		if m.Protocol != ProtocolTCP && m.Protocol != ProtocolUDP {
			return fmt.Errorf("port mapping %s: protocol %q is neither tcp nor udp", m, m.Protocol)
		}
	}
	for i, a := range ms {
		for _, b := range ms[:i] {
			if collide(a, b) {
				return fmt.Errorf("port mappings %s and %s both bind host port %s", b, a, overlap(a, b))
			}
		}
	}
	return nil
}

func collide(a, b Mapping) bool {
	if a.HostPort == 0 || a.HostPort != b.HostPort || a.Protocol != b.Protocol || a.Address.Is4() != b.Address.Is4() {
		return false
	}
	return a.Address == b.Address || a.Address.IsUnspecified() || b.Address.IsUnspecified()
}

// overlap says which host port two colliding mappings share.
func overlap(a, b Mapping) string {
	if a.Address == b.Address {
		return a.hostPort()
	}
	wide := a.Address
	if b.Address.IsUnspecified() {
		wide = b.Address
	}
	hp := Mapping{Address: wide, HostPort: a.HostPort, Protocol: a.Protocol}.hostPort()
	family := "IPv6"
	if wide.Is4() {
		family = "IPv4"
	}
	return fmt.Sprintf("%s (%s is every %s address of the host)", hp, wide, family)
}
