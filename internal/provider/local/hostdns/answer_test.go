package hostdns

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4242
	return m
}

func TestLocalReply(t *testing.T) {
	v4 := netip.MustParseAddr("10.251.0.1")
	v6 := netip.MustParseAddr("fd00::1")
	tests := []struct {
		name  string
		q     *dns.Msg
		addr  netip.Addr
		want  []string
		class uint16
	}{
		{name: "A", q: query("Web.PR-1.ci.example.", dns.TypeA), addr: v4, want: []string{"Web.PR-1.ci.example.\t5\tIN\tA\t10.251.0.1"}},
		{name: "ANY", q: query("web.pr-1.ci.example.", dns.TypeANY), addr: v4, want: []string{"web.pr-1.ci.example.\t5\tIN\tA\t10.251.0.1"}},
		{name: "AAAA of an IPv4 name", q: query("web.pr-1.ci.example.", dns.TypeAAAA), addr: v4},
		{name: "MX", q: query("web.pr-1.ci.example.", dns.TypeMX), addr: v4},
		{name: "TXT", q: query("web.pr-1.ci.example.", dns.TypeTXT), addr: v4},
		{name: "AAAA of an IPv6 name", q: query("web.", dns.TypeAAAA), addr: v6, want: []string{"web.\t5\tIN\tAAAA\tfd00::1"}},
		{name: "A of an IPv6 name", q: query("web.", dns.TypeA), addr: v6},
		{name: "class CHAOS", q: query("web.", dns.TypeA), addr: v4, class: dns.ClassCHAOS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.class != 0 {
				tt.q.Question[0].Qclass = tt.class
			}
			got := localReply(tt.q, tt.addr)
			if got.Id != 4242 || !got.Response || got.Rcode != dns.RcodeSuccess || !got.Authoritative {
				t.Errorf("header = %+v, want an authoritative NOERROR response with ID 4242", got.MsgHdr)
			}
			if diff := cmp.Diff(tt.q.Question, got.Question); diff != "" {
				t.Errorf("question (-want +got):\n%s", diff)
			}
			var rrs []string
			for _, rr := range got.Answer {
				rrs = append(rrs, rr.String())
			}
			if diff := cmp.Diff(tt.want, rrs); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if _, err := got.Pack(); err != nil {
				t.Errorf("reply does not pack: %v", err)
			}
		})
	}
}

func TestIsReplyTo(t *testing.T) {
	q := query("web.example.", dns.TypeA)
	reply := func(edit func(*dns.Msg)) *dns.Msg {
		r := new(dns.Msg)
		r.SetReply(q)
		if edit != nil {
			edit(r)
		}
		return r
	}
	tests := []struct {
		name string
		resp *dns.Msg
		want bool
	}{
		{"reply", reply(nil), true},
		{"name in other case", reply(func(r *dns.Msg) { r.Question[0].Name = "WEB.Example." }), true},
		{"other ID", reply(func(r *dns.Msg) { r.Id++ }), false},
		{"not a response", reply(func(r *dns.Msg) { r.Response = false }), false},
		{"other name", reply(func(r *dns.Msg) { r.Question[0].Name = "api.example." }), false},
		{"other type", reply(func(r *dns.Msg) { r.Question[0].Qtype = dns.TypeAAAA }), false},
		{"other class", reply(func(r *dns.Msg) { r.Question[0].Qclass = dns.ClassCHAOS }), false},
		{"no question", reply(func(r *dns.Msg) { r.Question = nil }), false},
	}
	for _, tt := range tests {
		if got := isReplyTo(q, tt.resp); got != tt.want {
			t.Errorf("%s: isReplyTo = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestFinal(t *testing.T) {
	for rcode, want := range map[int]bool{
		dns.RcodeSuccess:        true,
		dns.RcodeNameError:      true,
		dns.RcodeFormatError:    true,
		dns.RcodeServerFailure:  false,
		dns.RcodeRefused:        false,
		dns.RcodeNotImplemented: true,
	} {
		m := new(dns.Msg)
		m.Rcode = rcode
		if got := final(m); got != want {
			t.Errorf("final(%s) = %v, want %v", dns.RcodeToString[rcode], got, want)
		}
	}
}

func TestUDPSize(t *testing.T) {
	tests := []struct {
		name string
		edns uint16 // 0: none
		want int
	}{
		{"no EDNS", 0, 512},
		{"EDNS 1232", 1232, 1232},
		{"EDNS 4096", 4096, 4096},
		{"EDNS below 512", 100, 512},
	}
	for _, tt := range tests {
		q := query("web.", dns.TypeA)
		if tt.edns != 0 {
			q.SetEdns0(tt.edns, false)
		}
		if got := udpSize(q); got != tt.want {
			t.Errorf("%s: udpSize = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"Web.Example.": "web.example",
		"web.example":  "web.example",
		".":            "",
		"":             "",
	} {
		if got := canonical(in); got != want {
			t.Errorf("canonical(%q) = %q, want %q", in, got, want)
		}
	}
}
