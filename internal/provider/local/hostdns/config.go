package hostdns

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Config is what Serve forwards to and answers itself.
type Config struct {
	// Upstreams are the resolvers queries are forwarded to, tried in order:
	// the host's (ResolvConfNameservers) or the ones the user named
	// (ParseUpstream). At least one is required.
	Upstreams []netip.AddrPort
	// Dial connects to an upstream; network is "udp" or "tcp". The
	// connection for "udp" must keep datagram boundaries (a connected UDP
	// socket, as net.Dialer gives). Nil means a net.Dialer in the calling
	// process's network namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Local answers a name itself: it gets the query name in lower case
	// without the trailing dot and returns the address to answer with.
	// Nil answers nothing locally. See Wildcard.
	Local func(name string) (netip.Addr, bool)
	// Logf, if set, is told about upstreams that failed.
	Logf func(format string, args ...any)
}

// defaultPort is the DNS port an upstream without one gets.
const defaultPort = 53

// ParseUpstream parses an upstream resolver's address: an IP address with
// an optional port (53 by default), such as 10.0.0.1, 10.0.0.1:5353,
// fd00::1 or [fd00::1]:53.
func ParseUpstream(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, defaultPort), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return ap, nil
	}
	return netip.AddrPort{}, fmt.Errorf("DNS upstream %q: want an IP address with an optional port, like 10.0.0.1, 10.0.0.1:5353 or [fd00::1]:53", s)
}

// ResolvConfNameservers returns the nameservers of the resolv.conf at path,
// in order, on port 53. It fails when the file names none.
func ResolvConfNameservers(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the host's resolvers: %w", err)
	}
	defer f.Close()
	servers, err := parseResolvConf(f)
	if err != nil {
		return nil, fmt.Errorf("read the host's resolvers from %s: %w", path, err)
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("%s names no nameserver: give the DNS upstream explicitly", path)
	}
	return servers, nil
}

// parseResolvConf returns the addresses of the nameserver lines, skipping
// duplicates and lines it cannot read, as the C library's resolver does.
func parseResolvConf(r io.Reader) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		ap := netip.AddrPortFrom(a, defaultPort)
		if !seen[ap] {
			seen[ap] = true
			out = append(out, ap)
		}
	}
	return out, sc.Err()
}

// Wildcard returns a Config.Local that answers domain and every name under
// it with addr: Wildcard("pr-42.ci.example", ingress) answers
// gitlab.pr-42.ci.example. Case and a trailing dot in domain do not matter.
func Wildcard(domain string, addr netip.Addr) func(name string) (netip.Addr, bool) {
	domain = canonical(domain)
	return func(name string) (netip.Addr, bool) {
		if name == domain || strings.HasSuffix(name, "."+domain) {
			return addr, true
		}
		return netip.Addr{}, false
	}
}

// canonical is the form of a name Local gets: lower case, no trailing dot.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
