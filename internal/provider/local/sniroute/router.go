package sniroute

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/ephemera-dev/ephemera/internal/provider/local/portproxy"
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
	if err := portproxy.AcceptEach(ctx, ln, r.route); err != nil {
		_ = ln.Close()
		return err
	}
	return nil
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
	portproxy.Splice(client, up)
}

func (r *Router) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if r.Dial != nil {
		return r.Dial(ctx, network, address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
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
