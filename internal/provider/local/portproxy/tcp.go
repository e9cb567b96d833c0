package portproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ServeTCP accepts connections on l and forwards each to target (host:port)
// until ctx ends, then closes l and every connection and returns nil once
// all of its goroutines are gone. Each direction is copied on its own, and
// the end of one (EOF) is passed on as a half-close (CloseWrite). A client
// whose target cannot be reached (refused, as when no Service exposes the
// port, or not answered within 10 s) is reset, and serving goes on; so is a
// connection whose other side fails mid-way.
func (p *Proxy) ServeTCP(ctx context.Context, l net.Listener, target string) error {
	return AcceptEach(ctx, l, func(ctx context.Context, c net.Conn) { p.forwardTCP(ctx, c, target) })
}

// AcceptEach accepts connections on l and handles each in a goroutine of
// its own until ctx ends; then it closes l, waits for the handlers (their
// ctx ends too) and returns nil. Accept errors from a shortage of
// descriptors or buffers are waited out with a backoff; any other is
// returned, after the handlers are gone.
func AcceptEach(ctx context.Context, l net.Listener, handle func(ctx context.Context, c net.Conn)) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop := onDone(ctx, func() { _ = l.Close() })
	defer func() {
		cancel()
		stop()
		wg.Wait()
	}()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if retryable(err) {
				backoff(ctx, &delay)
				continue
			}
			return fmt.Errorf("accept on %s: %w", l.Addr(), err)
		}
		delay = 0
		wg.Go(func() { handle(ctx, c) })
	}
}

func (p *Proxy) forwardTCP(ctx context.Context, client net.Conn, target string) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	up, err := p.dial(dctx, "tcp", target)
	cancel()
	if err != nil {
		p.Log.V(1).Info("Resetting connection, target unreachable", "client", client.RemoteAddr().String(), "target", target, "err", err.Error())
		reset(client)
		return
	}
	stop := onDone(ctx, func() {
		_ = client.Close()
		_ = up.Close()
	})
	defer stop()
	Splice(client, up)
	_ = client.Close()
	_ = up.Close()
}

// Splice copies a to b and b to a until both directions end, passing the
// end of one (EOF) on as a half-close (CloseWrite). When one side fails
// (reset, or closed at ctx end), both are reset, so that the other side
// sees a reset rather than an orderly end, and the other copy returns.
// The caller closes a and b.
func Splice(a, b net.Conn) {
	errc := make(chan error, 2)
	go func() { errc <- pipe(b, a) }()
	go func() { errc <- pipe(a, b) }()
	for range 2 {
		if err := <-errc; err != nil {
			reset(a)
			reset(b)
		}
	}
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
