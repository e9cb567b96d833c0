package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/go-logr/logr"
)

// Gateway makes test clusters reachable from runner pods in the embedded
// management plane. Those pods are on the pod network of the management
// plane's node, where the host's loopback (on which control-plane-only
// clusters listen) is out of reach. The gateway listens on the host end of
// the management plane's veth, which the pods reach through their node's
// default route, masqueraded behind the node's address, and forwards each
// connection to a cluster's API server. TLS passes through untouched; the
// pods' kubeconfig names the original host as tls-server-name.
type Gateway struct {
	// Addr is the host address the pods dial.
	Addr netip.Addr
	// Log receives connection errors.
	Log logr.Logger

	mu      sync.Mutex
	proxies map[string]*proxy
}

type proxy struct {
	ln     net.Listener
	target string
}

// Expose forwards a port of the gateway to target (host:port) until
// Release(key), and returns the gateway's host:port for it. Exposing the
// same key again returns the same address. The port is prefer's when that
// is an address of the gateway and free (a restarted server keeps a
// running test's address), else any free one.
func (g *Gateway) Expose(key, target, prefer string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p, ok := g.proxies[key]; ok && p.target == target {
		return p.ln.Addr().String(), nil
	} else if ok {
		p.ln.Close()
		delete(g.proxies, key)
	}
	var ln net.Listener
	var err error
	if host, _, perr := net.SplitHostPort(prefer); perr == nil && host == g.Addr.String() {
		ln, err = net.Listen("tcp", prefer)
	}
	if ln == nil {
		ln, err = net.Listen("tcp", net.JoinHostPort(g.Addr.String(), "0"))
	}
	if err != nil {
		return "", fmt.Errorf("open a gateway port to %s for runner pods: %w", target, err)
	}
	if g.proxies == nil {
		g.proxies = map[string]*proxy{}
	}
	p := &proxy{ln: ln, target: target}
	g.proxies[key] = p
	go g.serve(p)
	return ln.Addr().String(), nil
}

// Release closes the port of key; connections open through it stay until
// either end closes them.
func (g *Gateway) Release(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p, ok := g.proxies[key]; ok {
		p.ln.Close()
		delete(g.proxies, key)
	}
}

// Close releases every port.
func (g *Gateway) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for key, p := range g.proxies {
		p.ln.Close()
		delete(g.proxies, key)
	}
}

func (g *Gateway) serve(p *proxy) {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return // released
		}
		go g.forward(conn, p.target)
	}
}

func (g *Gateway) forward(in net.Conn, target string) {
	defer in.Close()
	var d net.Dialer
	out, err := d.DialContext(context.Background(), "tcp", target)
	if err != nil {
		g.Log.V(1).Info("Gateway cannot reach cluster", "target", target, "error", err.Error())
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			g.Log.V(2).Info("Gateway connection ended", "target", target, "error", err.Error())
		}
		if c, ok := dst.(*net.TCPConn); ok {
			_ = c.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
}
