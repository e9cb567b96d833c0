package hostdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/miekg/dns"
)

// Serve answers DNS queries on udp and tcp (either may be nil) as cfg says
// until ctx ends, then closes both, waits for the queries in flight to be
// dropped and returns nil. It returns an error if cfg is invalid or a
// socket fails. Queries are answered concurrently.
func Serve(ctx context.Context, udp net.PacketConn, tcp net.Listener, cfg Config) error {
	if udp != nil {
		defer udp.Close()
	}
	if tcp != nil {
		defer tcp.Close()
	}
	if udp == nil && tcp == nil {
		return errors.New("serve DNS: no socket to serve on")
	}
	if len(cfg.Upstreams) == 0 {
		return errors.New("serve DNS: no upstream resolver")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := newForwarder(cfg)

	var servers []*server
	if udp != nil {
		servers = append(servers, newServer(&dns.Server{PacketConn: udp, Handler: handler{ctx, f, false}}))
	}
	if tcp != nil {
		servers = append(servers, newServer(&dns.Server{Listener: tcp, Handler: handler{ctx, f, true}}))
	}
	stopped := make(chan struct{})
	var once sync.Once
	for _, s := range servers {
		go func() {
			s.err = s.ActivateAndServe()
			close(s.done)
			once.Do(func() { close(stopped) })
		}()
	}
	select {
	case <-ctx.Done():
	case <-stopped:
	}
	// Queries in flight give up their upstream exchanges; the servers wait
	// for them.
	cancel()
	var errs []error
	for _, s := range servers {
		select {
		case <-s.started:
			_ = s.Shutdown()
		case <-s.done:
		}
		<-s.done
		if s.err != nil {
			errs = append(errs, fmt.Errorf("serve DNS on %s: %w", s.addr(), s.err))
		}
	}
	return errors.Join(errs...)
}

// server is a dns.Server that tells when it has started and stopped.
type server struct {
	*dns.Server
	started chan struct{}
	done    chan struct{}
	err     error
}

func newServer(s *dns.Server) *server {
	srv := &server{Server: s, started: make(chan struct{}), done: make(chan struct{})}
	s.NotifyStartedFunc = func() { close(srv.started) }
	return srv
}

func (s *server) addr() string {
	if s.PacketConn != nil {
		return "udp " + s.PacketConn.LocalAddr().String()
	}
	return "tcp " + s.Listener.Addr().String()
}

// handler answers the queries of one socket.
type handler struct {
	ctx context.Context
	f   *forwarder
	tcp bool
}

func (h handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if resp := h.f.reply(h.ctx, req, h.tcp); resp != nil {
		if err := w.WriteMsg(resp); err != nil && h.ctx.Err() == nil {
			h.f.logf("DNS reply to %s: %v", w.RemoteAddr(), err)
		}
	}
}
