package hostdns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// upstreamTimeout bounds one exchange with an upstream: over UDP, and again
// over TCP after a truncated answer.
const upstreamTimeout = 2 * time.Second

// forwarder answers the queries of one Serve.
type forwarder struct {
	upstreams []netip.AddrPort
	dial      func(ctx context.Context, network, address string) (net.Conn, error)
	local     func(name string) (netip.Addr, bool)
	logf      func(format string, args ...any)
}

func newForwarder(cfg Config) *forwarder {
	f := &forwarder{upstreams: cfg.Upstreams, dial: cfg.Dial, local: cfg.Local, logf: cfg.Logf}
	if f.dial == nil {
		f.dial = new(net.Dialer).DialContext
	}
	if f.logf == nil {
		f.logf = func(string, ...any) {}
	}
	return f
}

// reply answers req, which came over TCP if tcp is set: locally, or with
// an upstream's answer. It returns nil when ctx ended first.
func (f *forwarder) reply(ctx context.Context, req *dns.Msg, tcp bool) *dns.Msg {
	if req.Opcode != dns.OpcodeQuery {
		return errorReply(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return errorReply(req, dns.RcodeFormatError)
	}
	if f.local != nil {
		if addr, ok := f.local(canonical(req.Question[0].Name)); ok {
			return localReply(req, addr)
		}
	}
	resp := f.forward(ctx, req)
	if resp == nil {
		return nil
	}
	resp.Id = req.Id
	if !tcp {
		resp.Truncate(udpSize(req))
	}
	return resp
}

// forward asks the upstreams in order, each over UDP and then over TCP if
// the answer was truncated, and returns the first answer that is not a
// failure; else the last failure an upstream answered, else SERVFAIL.
func (f *forwarder) forward(ctx context.Context, req *dns.Msg) *dns.Msg {
	q := req.Copy()
	var failed *dns.Msg
	for _, up := range f.upstreams {
		q.Id = dns.Id()
		resp, err := f.exchange(ctx, "udp", up, q)
		if err == nil && resp.Truncated {
			resp, err = f.exchange(ctx, "tcp", up, q)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			f.logf("DNS upstream %s: %v", up, err)
			continue
		}
		if final(resp) {
			return resp
		}
		failed = resp
	}
	if failed != nil {
		return failed
	}
	return errorReply(req, dns.RcodeServerFailure)
}

// exchange sends q to server over network ("udp" or "tcp") and returns its
// reply: over UDP, the first datagram that answers q.
func (f *forwarder) exchange(ctx context.Context, network string, server netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
	defer cancel()
	wire, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	conn, err := f.dial(ctx, network, server.String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// Serve's end unblocks the exchange at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	resp, err := roundTrip(conn, network == "tcp", q, wire)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	return resp, nil
}

// roundTrip writes the query wire (q packed) to conn and reads the reply,
// with the two-byte length prefix of DNS over TCP if stream is set.
func roundTrip(conn net.Conn, stream bool, q *dns.Msg, wire []byte) (*dns.Msg, error) {
	if stream {
		framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(wire)), uint16(len(wire)))
		if _, err := conn.Write(append(framed, wire...)); err != nil {
			return nil, err
		}
		var n [2]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return nil, err
		}
		buf := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return nil, err
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(buf); err != nil {
			return nil, fmt.Errorf("unpack reply: %w", err)
		}
		if !isReplyTo(q, resp) {
			return nil, errors.New("the reply does not answer the query")
		}
		return resp, nil
	}
	if _, err := conn.Write(wire); err != nil {
		return nil, err
	}
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		// A datagram that is not the reply (a late answer to an earlier
		// query, or garbage) is skipped.
		resp := new(dns.Msg)
		if resp.Unpack(buf[:n]) == nil && isReplyTo(q, resp) {
			return resp, nil
		}
	}
}
