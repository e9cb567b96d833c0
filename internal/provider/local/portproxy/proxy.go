package portproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// Defaults of a Proxy.
const (
	DefaultUDPIdleTimeout = 60 * time.Second
	DefaultUDPMaxSessions = 1024
	// dialTimeout bounds connecting to the target; a connection not made
	// by then is reset like a refused one.
	dialTimeout = 10 * time.Second
)

// Proxy forwards host sockets to a target. The zero Proxy is ready to use;
// set fields before the first Serve.
type Proxy struct {
	// Dial connects to the target; nil dials from this process with a
	// net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// UDPIdleTimeout closes a UDP session that carried nothing either way
	// for this long; 0 means DefaultUDPIdleTimeout.
	UDPIdleTimeout time.Duration
	// UDPMaxSessions bounds the UDP sessions of one socket; datagrams from
	// further clients are dropped. 0 means DefaultUDPMaxSessions.
	UDPMaxSessions int
	// Log receives one line per connection or session it could not
	// forward, at V(1); the zero Logger discards.
	Log logr.Logger

	udpSessions atomic.Int64 // open UDP sessions, for tests
}

// Serve forwards one host port of the supervisor to port m.Port of ingress
// until ctx ends: f is the socket Bind returned for m, inherited through
// exec.Cmd.ExtraFiles (os.NewFile(3+i, …) in the supervisor). Serve takes
// f and returns at once with an error when f is not m's socket.
func (p *Proxy) Serve(ctx context.Context, m Mapping, f *os.File, ingress netip.Addr) error {
	target := netip.AddrPortFrom(ingress, m.Port).String()
	defer f.Close() // net.File* duplicate it
	switch m.Protocol {
	case ProtocolTCP:
		l, err := net.FileListener(f)
		if err != nil {
			return fmt.Errorf("port mapping %s: inherited socket is not a %s socket: %w", m, m.Protocol, err)
		}
		if err := checkInherited(m, l.Addr()); err != nil {
			_ = l.Close()
			return err
		}
		return p.ServeTCP(ctx, l, target)
	case ProtocolUDP:
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return fmt.Errorf("port mapping %s: inherited socket is not a %s socket: %w", m, m.Protocol, err)
		}
		if err := checkInherited(m, pc.LocalAddr()); err != nil {
			_ = pc.Close()
			return err
		}
		return p.ServeUDP(ctx, pc, target)
	}
	return fmt.Errorf("port mapping %s: protocol %q is neither tcp nor udp", m, m.Protocol)
}

// checkInherited refuses a socket bound elsewhere than m says, which means
// the plan and the inherited files are out of step.
func checkInherited(m Mapping, a net.Addr) error {
	var got netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		got = a.AddrPort()
	case *net.UDPAddr:
		got = a.AddrPort()
	default:
		return fmt.Errorf("port mapping %s: inherited socket is %s %s, not %s", m, a.Network(), a, m.Protocol)
	}
	if got.Addr().Unmap() != m.Address || (m.HostPort != 0 && got.Port() != m.HostPort) {
		return fmt.Errorf("port mapping %s: inherited socket is bound to %s", m, got)
	}
	return nil
}

func (p *Proxy) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if p.Dial != nil {
		return p.Dial(ctx, network, address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// retryable tells accept and read errors worth waiting out: the process
// or host is short of descriptors or buffers.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// onDone calls f when ctx ends, unless the returned stop is called first;
// stop returns once f, if called, has returned.
func onDone(ctx context.Context, f func()) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	stopf := context.AfterFunc(ctx, func() {
		defer wg.Done()
		f()
	})
	return func() {
		if stopf() {
			wg.Done()
		}
		wg.Wait()
	}
}

// backoff waits d, doubled from 5 ms up to 1 s, or until ctx ends.
func backoff(ctx context.Context, d *time.Duration) {
	*d = min(max(*d*2, 5*time.Millisecond), time.Second)
	t := time.NewTimer(*d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
