package portproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

// ServeUDP forwards datagrams that arrive on pc to target (host:port)
// until ctx ends, then closes pc and every session and returns nil once all
// of its goroutines are gone. Each client address gets a session, a UDP
// socket dialed to target, whose replies go back to the client from pc.
// A session that carried nothing either way for UDPIdleTimeout is closed;
// datagrams from new clients while UDPMaxSessions are open are dropped.
// Replies leave pc from the address the host routes to the client by, which
// is the address the client sent to unless pc is bound to 0.0.0.0 or :: on a
// host with several addresses on one route to the client.
func (p *Proxy) ServeUDP(ctx context.Context, pc net.PacketConn, target string) error {
	ctx, cancel := context.WithCancel(ctx)
	s := &udpServer{p: p, pc: pc, target: target, start: time.Now(), sessions: map[string]*udpSession{}}
	stop := onDone(ctx, func() { _ = pc.Close() })
	defer func() {
		cancel()
		stop()
		s.closeAll()
		s.wg.Wait()
	}()
	buf := make([]byte, maxDatagram)
	var delay time.Duration
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if retryable(err) {
				backoff(ctx, &delay)
				continue
			}
			return fmt.Errorf("read on %s: %w", pc.LocalAddr(), err)
		}
		delay = 0
		sess := s.session(ctx, from)
		if sess == nil {
			continue
		}
		sess.touch(s.start)
		// A refused earlier datagram (ICMP port unreachable) fails this
		// write with ECONNREFUSED; the datagram is lost as it would be
		// without the proxy.
		_, _ = sess.up.Write(buf[:n])
	}
}

type udpServer struct {
	p      *Proxy
	pc     net.PacketConn
	target string
	start  time.Time // monotonic base of udpSession.last
	wg     sync.WaitGroup

	mu       sync.Mutex
	sessions map[string]*udpSession // by client address
	closed   bool
}

type udpSession struct {
	client net.Addr
	up     net.Conn
	last   atomic.Int64 // time of the last datagram either way, since udpServer.start
}

func (s *udpSession) touch(start time.Time) { s.last.Store(int64(time.Since(start))) }

// session returns the session of client, new if need be, or nil when it
// cannot have one.
func (s *udpServer) session(ctx context.Context, client net.Addr) *udpSession {
	key := client.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[key]; sess != nil {
		return sess
	}
	maxSessions := s.p.UDPMaxSessions
	if maxSessions <= 0 {
		maxSessions = DefaultUDPMaxSessions
	}
	if s.closed || len(s.sessions) >= maxSessions {
		s.p.Log.V(1).Info("Dropping datagram, too many UDP sessions", "client", key, "target", s.target, "sessions", len(s.sessions))
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	up, err := s.p.dial(dctx, "udp", s.target)
	cancel()
	if err != nil {
		s.p.Log.V(1).Info("Dropping datagram, target unreachable", "client", key, "target", s.target, "err", err.Error())
		return nil
	}
	sess := &udpSession{client: client, up: up}
	sess.touch(s.start)
	s.sessions[key] = sess
	s.p.udpSessions.Add(1)
	s.wg.Go(func() { s.replies(sess) })
	return sess
}

// replies sends what the target sends on sess back to its client, and ends
// the session once it is idle or closed.
func (s *udpServer) replies(sess *udpSession) {
	defer s.remove(sess)
	idle := s.p.UDPIdleTimeout
	if idle <= 0 {
		idle = DefaultUDPIdleTimeout
	}
	buf := make([]byte, maxDatagram)
	for {
		last := s.start.Add(time.Duration(sess.last.Load()))
		if !time.Now().Before(last.Add(idle)) {
			return
		}
		_ = sess.up.SetReadDeadline(last.Add(idle))
		n, err := sess.up.Read(buf)
		switch {
		case err == nil:
			sess.touch(s.start)
			_, _ = s.pc.WriteTo(buf[:n], sess.client)
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED):
			// Idle time is checked above; nothing listens on the target
			// (yet): further datagrams may still reach it.
		default:
			return
		}
	}
}

func (s *udpServer) remove(sess *udpSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[sess.client.String()] == sess {
		delete(s.sessions, sess.client.String())
	}
	_ = sess.up.Close()
	s.p.udpSessions.Add(-1)
}

// closeAll closes every session and refuses new ones.
func (s *udpServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, sess := range s.sessions {
		_ = sess.up.Close()
	}
}
