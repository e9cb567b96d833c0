package hostdns

import (
	"net/netip"

	"github.com/miekg/dns"
)

// localTTL is the TTL of local answers: short, so that a cluster's new
// ingress address is seen at once.
const localTTL = 5

// minUDPSize is the size of a UDP reply to a client without EDNS.
const minUDPSize = 512

// localReply answers req, a query for a name Local knows, with addr: an A
// (or AAAA) record for queries of that type or ANY, no record for other
// types (NOERROR, so the name still exists).
func localReply(req *dns.Msg, addr netip.Addr) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return m
	}
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: localTTL}
	switch {
	case addr.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
		hdr.Rrtype = dns.TypeA
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: addr.AsSlice()}}
	case addr.Is6() && !addr.Is4In6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()}}
	}
	return m
}

// errorReply answers req with rcode and nothing else.
func errorReply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionAvailable = true
	return m
}

// isReplyTo reports whether resp answers q: a response with q's ID and
// question (names compared without case).
func isReplyTo(q, resp *dns.Msg) bool {
	if !resp.Response || resp.Id != q.Id || len(resp.Question) != len(q.Question) {
		return false
	}
	for i, a := range q.Question {
		b := resp.Question[i]
		if a.Qtype != b.Qtype || a.Qclass != b.Qclass || canonical(a.Name) != canonical(b.Name) {
			return false
		}
	}
	return true
}

// final reports whether an upstream's reply is to be relayed, rather than
// the next upstream asked: every answer but a server failure or a refusal.
func final(resp *dns.Msg) bool {
	return resp.Rcode != dns.RcodeServerFailure && resp.Rcode != dns.RcodeRefused
}

// udpSize is the largest reply a UDP client takes: its EDNS buffer size, at
// least 512 bytes.
func udpSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil && opt.UDPSize() > minUDPSize {
		return int(opt.UDPSize())
	}
	return minUDPSize
}
