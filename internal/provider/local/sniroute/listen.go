package sniroute

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen binds a TCP listener on addr with SO_REUSEADDR and SO_REUSEPORT,
// so that every cluster's supervisor listens on the same advertised
// address and port: the kernel spreads connections among them, and each
// routes every cluster of the host. It returns the listening socket as a
// file to pass to the supervisor (exec.Cmd.ExtraFiles), which serves it
// with net.FileListener; the caller closes the file. An IPv6 addr binds
// IPv6 only. The error is a *ListenError; errors.Is(err,
// syscall.EADDRINUSE) tells that another program holds the port.
func Listen(addr netip.AddrPort) (*os.File, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	network := "tcp4"
	if addr.Addr().Is6() {
		network = "tcp6"
	}
	lc := net.ListenConfig{Control: reusePort}
	l, err := lc.Listen(context.Background(), network, addr.String())
	if err != nil {
		return nil, &ListenError{Addr: addr, Err: err}
	}
	f, err := l.(*net.TCPListener).File()
	// f is a duplicate that keeps the socket bound.
	_ = l.Close()
	if err != nil {
		return nil, &ListenError{Addr: addr, Err: err}
	}
	return f, nil
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	return errors.Join(err, serr)
}

// ListenError is an address Listen could not listen on.
type ListenError struct {
	Addr netip.AddrPort
	Err  error
}

func (e *ListenError) Error() string {
	a, p := e.Addr.Addr(), e.Addr.Port()
	switch {
	case errors.Is(e.Err, syscall.EADDRINUSE):
		// Ephemera's own listeners share the port (SO_REUSEPORT); a
		// socket that did not set it holds the port alone.
		flag := a.String() + ":PORT"
		if a.Is6() {
			flag = "[" + a.String() + "]:PORT"
		}
		return fmt.Sprintf("port %d on %s is in use by another program: choose another with --advertise-address %s", p, a, flag)
	case errors.Is(e.Err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf("advertised address %s is not an address of this host", a)
	case errors.Is(e.Err, syscall.EACCES):
		return fmt.Sprintf("listen on %s: port %d needs privileges (root or CAP_NET_BIND_SERVICE)", e.Addr, p)
	}
	return fmt.Sprintf("listen on %s: %v", e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }
