package portproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// Bound is a Mapping bound on the host: HostPort is the real port (never 0)
// and File the bound socket, a listening one for TCP.
type Bound struct {
	Mapping
	// File is the socket, to pass to the supervisor in exec.Cmd.ExtraFiles
	// and close once it started.
	File *os.File `json:"-"`
}

// Bind checks ms (Check) and binds them all in this process's network
// namespace, TCP listeners with SO_REUSEADDR as any server, an IPv6
// address for IPv6 only. On any failure it closes what it bound and returns
// an error naming the mapping and the cause; errors.Is(err,
// syscall.EADDRINUSE) tells a port in use. The caller closes the files.
func Bind(ms []Mapping) ([]Bound, error) {
	if err := Check(ms); err != nil {
		return nil, err
	}
	bs := make([]Bound, 0, len(ms))
	for _, m := range ms {
		b, err := bind(m)
		if err != nil {
			for _, b := range bs {
				_ = b.File.Close()
			}
			return nil, err
		}
		bs = append(bs, b)
	}
	return bs, nil
}

func bind(m Mapping) (Bound, error) {
	network := m.Protocol + "4"
	if m.Address.Is6() {
		network = m.Protocol + "6"
	}
	addr := netip.AddrPortFrom(m.Address, m.HostPort).String()
	var (
		sock interface{ Close() error }
		f    *os.File
		port int
		err  error
	)
	// Go sets SO_REUSEADDR on every TCP listener; a tcp6 or udp6 socket is
	// IPV6_V6ONLY, so :: and 0.0.0.0 are separate ports as Check assumes.
	if m.Protocol == ProtocolTCP {
		var l *net.TCPListener
		if l, err = listenTCP(network, addr); err == nil {
			sock, port = l, l.Addr().(*net.TCPAddr).Port
			f, err = l.File()
		}
	} else {
		var c *net.UDPConn
		if c, err = listenUDP(network, addr); err == nil {
			sock, port = c, c.LocalAddr().(*net.UDPAddr).Port
			f, err = c.File()
		}
	}
	if sock != nil {
		// f is a duplicate that keeps the socket bound.
		_ = sock.Close()
	}
	if err != nil {
		return Bound{}, &BindError{Mapping: m, Err: err}
	}
	b := Bound{Mapping: m, File: f}
	b.HostPort = uint16(port)
	return b, nil
}

func listenTCP(network, addr string) (*net.TCPListener, error) {
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}

func listenUDP(network, addr string) (*net.UDPConn, error) {
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// BindError is a mapping Bind could not bind.
type BindError struct {
	Mapping Mapping
	Err     error
}

func (e *BindError) Error() string {
	hp := e.Mapping.hostPort()
	var cause string
	switch {
	case errors.Is(e.Err, syscall.EADDRINUSE):
		cause = "host port " + hp + " is in use"
	case errors.Is(e.Err, syscall.EACCES):
		cause = "host port " + hp + " needs privileges (root or CAP_NET_BIND_SERVICE)"
	case errors.Is(e.Err, syscall.EADDRNOTAVAIL):
		cause = fmt.Sprintf("%s is not an address of this host", e.Mapping.Address)
	default:
		cause = fmt.Sprintf("bind host port %s: %v", hp, e.Err)
	}
	return fmt.Sprintf("port mapping %s: %s", e.Mapping, cause)
}

func (e *BindError) Unwrap() error { return e.Err }
