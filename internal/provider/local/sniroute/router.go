package sniroute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

const (
	// DefaultHelloTimeout is the wait for a ClientHello when
	// Router.HelloTimeout is 0.
	DefaultHelloTimeout = 10 * time.Second
	// dialTimeout bounds connecting to a backend.
	dialTimeout = 10 * time.Second
)

// Router passes TLS connections through to the backend their server name
// (SNI) names; it never terminates TLS, so the client verifies the
// backend's own certificate. Set the fields before Serve.
type Router struct {
	// Lookup returns the backend host:port for a server name (lower
	// case), or ok=false, and the connection is closed. Required.
	Lookup func(ctx context.Context, serverName string) (backend string, ok bool)
	// Dial dials the backend; nil dials from this process with a
	// net.Dialer. The supervisor passes a dialer in the host's network
	// namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// HelloTimeout bounds the wait for the ClientHello; 0 means
	// DefaultHelloTimeout.
	HelloTimeout time.Duration
	// Log receives one line, at V(1), per connection not routed; the zero
	// Logger discards.
	Log logr.Logger
}

// Serve accepts on ln until ctx ends, then closes ln and every connection
// and returns nil once all of its goroutines are gone. For each connection
// it reads the ClientHello (within HelloTimeout), looks its server name up,
// dials the backend (within 10 s), writes the bytes read to it, then copies
// both ways, passing the end of each direction on as a half-close
// (CloseWrite), until both are done. A connection whose hello is not TLS,
// has no server name or comes too late, whose name Lookup does not know,
// or whose backend cannot be reached is closed. Serve returns an error
// when Lookup is nil or accepting fails for good.
func (r *Router) Serve(ctx context.Context, ln net.Listener) error {
	if r.Lookup == nil {
		_ = ln.Close()
		return errors.New("sniroute: Router.Lookup is nil")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop := onDone(ctx, func() { _ = ln.Close() })
	defer func() {
		cancel()
		stop()
		wg.Wait()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if retryable(err) {
				backoff(ctx, &delay)
				continue
			}
			_ = ln.Close()
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		delay = 0
		wg.Go(func() { r.route(ctx, c) })
	}
}

// route passes client through to its backend and closes it.
func (r *Router) route(ctx context.Context, client net.Conn) {
	stopClient := onDone(ctx, func() { _ = client.Close() })
	defer func() {
		stopClient()
		_ = client.Close()
	}()
	log := r.Log.WithValues("client", client.RemoteAddr().String())

	timeout := r.HelloTimeout
	if timeout <= 0 {
		timeout = DefaultHelloTimeout
	}
	_ = client.SetReadDeadline(time.Now().Add(timeout))
	name, hello, err := ServerName(client)
	if err != nil {
		log.V(1).Info("Closing connection, no TLS server name", "err", err.Error())
		return
	}
	_ = client.SetReadDeadline(time.Time{})
	log = log.WithValues("serverName", name)

	backend, ok := r.Lookup(ctx, name)
	if !ok {
		log.V(1).Info("Closing connection, unknown server name")
		return
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	up, err := r.dial(dctx, "tcp", backend)
	cancel()
	if err != nil {
		log.V(1).Info("Closing connection, backend unreachable", "backend", backend, "err", err.Error())
		return
	}
	stopUp := onDone(ctx, func() { _ = up.Close() })
	defer func() {
		stopUp()
		_ = up.Close()
	}()
	if _, err := up.Write(hello); err != nil {
		log.V(1).Info("Closing connection, backend write failed", "backend", backend, "err", err.Error())
		return
	}
	errc := make(chan error, 2)
	go func() { errc <- pipe(up, client) }()
	go func() { errc <- pipe(client, up) }()
	for range 2 {
		if err := <-errc; err != nil {
			// One side failed (reset, or closed at ctx end): abort both,
			// so that the other side sees a reset rather than an orderly
			// end, and the other copy returns.
			reset(client)
			reset(up)
		}
	}
}

func (r *Router) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if r.Dial != nil {
		return r.Dial(ctx, network, address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// pipe copies src to dst until src ends, then half-closes dst.
func pipe(dst, src net.Conn) error {
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	return nil
}

// reset closes c so that its peer gets a TCP RST instead of a FIN.
func reset(c net.Conn) {
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
	_ = c.Close()
}

// retryable tells accept errors worth waiting out: the process or host is
// short of descriptors or buffers.
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
