package portproxy

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	loopback4 = netip.MustParseAddr("127.0.0.1")
	any4      = netip.MustParseAddr("0.0.0.0")
	any6      = netip.MustParseAddr("::")
	loopback6 = netip.MustParseAddr("::1")
)

// cmpAddr compares netip.Addr values by value (they have unexported fields).
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mapping
		str  string // String(); "" means in
	}{
		{in: "8080:80", want: Mapping{loopback4, 8080, 80, "tcp"}, str: "127.0.0.1:8080:80/tcp"},
		{in: "127.0.0.1:8080:80/tcp", want: Mapping{loopback4, 8080, 80, "tcp"}},
		{in: "0.0.0.0:22:22", want: Mapping{any4, 22, 22, "tcp"}, str: "0.0.0.0:22:22/tcp"},
		{in: "[::1]:8443:443", want: Mapping{loopback6, 8443, 443, "tcp"}, str: "[::1]:8443:443/tcp"},
		{in: "[::]:53:53/udp", want: Mapping{any6, 53, 53, "udp"}},
		{in: "[::ffff:10.0.0.1]:80:80/tcp", want: Mapping{netip.MustParseAddr("10.0.0.1"), 80, 80, "tcp"}, str: "10.0.0.1:80:80/tcp"},
		{in: "0:80", want: Mapping{loopback4, 0, 80, "tcp"}, str: "127.0.0.1:0:80/tcp"},
		{in: "5353:53/udp", want: Mapping{loopback4, 5353, 53, "udp"}, str: "127.0.0.1:5353:53/udp"},
		{in: "5353:53/UDP", want: Mapping{loopback4, 5353, 53, "udp"}, str: "127.0.0.1:5353:53/udp"},
		{in: "65535:65535", want: Mapping{loopback4, 65535, 65535, "tcp"}, str: "127.0.0.1:65535:65535/tcp"},
		{in: "10.1.2.3:08080:080", want: Mapping{netip.MustParseAddr("10.1.2.3"), 8080, 80, "tcp"}, str: "10.1.2.3:8080:80/tcp"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpAddr); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tc.in, diff)
			}
			str := tc.str
			if str == "" {
				str = tc.in
			}
			if got.String() != str {
				t.Errorf("String() = %q, want %q", got.String(), str)
			}
			again, err := Parse(got.String())
			if err != nil {
				t.Fatalf("Parse(String()): %v", err)
			}
			if diff := cmp.Diff(got, again, cmpAddr); diff != "" {
				t.Errorf("Parse(String()) (-first +again):\n%s", diff)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: the reason within the error
	}{
		{"", "empty mapping"},
		{"/tcp", "empty mapping"},
		{"8080", "two or three fields"},
		{"8080:80x", `PORT "80x" is not a port number from 1 to 65535`},
		{"8080:80/sctp", `protocol "sctp" is neither tcp nor udp`},
		{"8080:80/", `protocol "" is neither tcp nor udp`},
		{"8080:0", `PORT "0" is not a port number from 1 to 65535`},
		{"8080:65536", `PORT "65536" is not a port number`},
		{"65536:80", `HOSTPORT "65536" is not a port number from 0 to 65535`},
		{"-1:80", `HOSTPORT "-1": port ranges are not supported`},
		{"8000-8010:80", `HOSTPORT "8000-8010": port ranges are not supported`},
		{"x:80", `HOSTPORT "x" is not a port number`},
		{":80", `HOSTPORT "" is not a port number`},
		{"8080:", `PORT "" is not a port number`},
		{"localhost:8080:80", `ADDR "localhost" is not an IP address`},
		{"300.0.0.1:8080:80", `ADDR "300.0.0.1" is not an IP address`},
		{":8080:80", "ADDR is empty"},
		{"::1:8443:443", "an IPv6 address must be in brackets"},
		{"[::1:8443:443", "an address in brackets must be followed by :HOSTPORT:PORT"},
		{"[::1]8443:443", "an address in brackets must be followed by :HOSTPORT:PORT"},
		{"[::1]:443", "two or three fields"},
		{"[127.0.0.1]:8080:80", "brackets are for IPv6 addresses"},
		{"[fe80::1%eth0]:8080:80", "has a zone"},
		{"224.0.0.1:8080:80", "multicast"},
		{"1.2.3.4:1:2:3", "two or three fields"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", tc.in)
			}
			prefix := `--port "` + tc.in + `": `
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "("+form+")") {
				t.Errorf("Parse(%q) = %q, want %q…%q…(%s)", tc.in, err, prefix, tc.want, form)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	m := func(s string) Mapping {
		t.Helper()
		m, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		name string
		ms   []Mapping
		want string // "" for no error
	}{
		{name: "none"},
		{name: "distinct", ms: []Mapping{m("8080:80"), m("8443:443"), m("0.0.0.0:2222:22")}},
		{name: "same port, other protocol", ms: []Mapping{m("5353:53/tcp"), m("5353:53/udp")}},
		{name: "same port, other addresses", ms: []Mapping{m("127.0.0.1:80:80"), m("127.0.0.2:80:81")}},
		{name: "same port, other families", ms: []Mapping{m("0.0.0.0:80:80"), m("[::]:80:80"), m("[::1]:8080:80"), m("8080:80")}},
		{name: "host port 0 twice", ms: []Mapping{m("0:80"), m("0:80"), m("0.0.0.0:0:80")}},
		{
			name: "same mapping twice",
			ms:   []Mapping{m("8080:80"), m("8443:443"), m("8080:80")},
			want: "port mappings 127.0.0.1:8080:80/tcp and 127.0.0.1:8080:80/tcp both bind host port 127.0.0.1:8080",
		},
		{
			name: "same host port, other PORT",
			ms:   []Mapping{m("5353:53/udp"), m("5353:54/udp")},
			want: "port mappings 127.0.0.1:5353:53/udp and 127.0.0.1:5353:54/udp both bind host port 127.0.0.1:5353/udp",
		},
		{
			name: "0.0.0.0 after a specific address",
			ms:   []Mapping{m("8080:80"), m("0.0.0.0:8080:81")},
			want: "port mappings 127.0.0.1:8080:80/tcp and 0.0.0.0:8080:81/tcp both bind host port 0.0.0.0:8080 (0.0.0.0 is every IPv4 address of the host)",
		},
		{
			name: "0.0.0.0 before a specific address",
			ms:   []Mapping{m("0.0.0.0:8080:81"), m("10.0.0.1:8080:80")},
			want: "port mappings 0.0.0.0:8080:81/tcp and 10.0.0.1:8080:80/tcp both bind host port 0.0.0.0:8080 (0.0.0.0 is every IPv4 address of the host)",
		},
		{
			name: ":: and ::1",
			ms:   []Mapping{m("[::1]:53:53/udp"), m("[::]:53:53/udp")},
			want: "port mappings [::1]:53:53/udp and [::]:53:53/udp both bind host port [::]:53/udp (:: is every IPv6 address of the host)",
		},
		{name: "no address", ms: []Mapping{{HostPort: 80, Port: 80, Protocol: "tcp"}}, want: "port mapping 80:80/tcp: no address"},
		{name: "PORT 0", ms: []Mapping{{Address: loopback4, HostPort: 80, Protocol: "tcp"}}, want: "port mapping 127.0.0.1:80:0/tcp: PORT 0 is not a port to forward to"},
		{name: "no protocol", ms: []Mapping{{Address: loopback4, HostPort: 80, Port: 80}}, want: `port mapping 127.0.0.1:80:80: protocol "" is neither tcp nor udp`},
		{
			name: "IPv4-mapped address",
			ms:   []Mapping{{Address: netip.MustParseAddr("::ffff:127.0.0.1"), HostPort: 80, Port: 80, Protocol: "tcp"}},
			want: "port mapping [::ffff:127.0.0.1]:80:80/tcp: address ::ffff:127.0.0.1 is IPv4-mapped; write it as 127.0.0.1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.ms)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Check() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMappingJSON(t *testing.T) {
	m, err := Parse("[::1]:0:443/udp")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"address":"::1","hostPort":0,"port":443,"protocol":"udp"}`
	if string(b) != want {
		t.Errorf("json.Marshal = %s, want %s", b, want)
	}
	var back Mapping
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, back, cmpAddr); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}
