package hostdns

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "10.0.0.1", want: "10.0.0.1:53"},
		{in: "127.0.0.53", want: "127.0.0.53:53"},
		{in: "10.0.0.1:5353", want: "10.0.0.1:5353"},
		{in: "[fd00::1]:53", want: "[fd00::1]:53"},
		{in: "fd00::1", want: "[fd00::1]:53"},
		{in: "fe80::1%eth0", want: "[fe80::1%eth0]:53"},
		{in: "[fe80::1%eth0]:5353", want: "[fe80::1%eth0]:5353"},
		{in: "", wantErr: true},
		{in: "dns.example", wantErr: true},
		{in: "dns.example:53", wantErr: true},
		{in: "10.0.0.1:0", wantErr: true},
		{in: "10.0.0.1:70000", wantErr: true},
		{in: "10.0.0.1:", wantErr: true},
		{in: "fd00::1:53:", wantErr: true},
		{in: "10.0.0.0/24", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUpstream(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseUpstream(%q) = %s, want an error", tt.in, got)
				}
				if !strings.Contains(err.Error(), "10.0.0.1:5353") {
					t.Errorf("error %q does not show the expected form", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("ParseUpstream(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "empty", in: "", want: nil},
		{
			name: "systemd-resolved stub",
			in:   "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
			want: []string{"127.0.0.53:53"},
		},
		{
			name: "order kept, duplicates dropped",
			in:   "nameserver 10.0.0.2\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n",
			want: []string{"10.0.0.2:53", "10.0.0.1:53"},
		},
		{
			name: "IPv6, with zone",
			in:   "nameserver fd00::53\nnameserver fe80::1%eth0\n",
			want: []string{"[fd00::53]:53", "[fe80::1%eth0]:53"},
		},
		{
			name: "comments, blanks, tabs and junk",
			in:   "; comment\n\n  nameserver\t127.0.0.11   # docker\nnameserver\nnameserver dns.example\nnameservers 10.9.9.9\ndomain x\n#nameserver 10.8.8.8\n",
			want: []string{"127.0.0.11:53"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseResolvConf(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var gotS []string
			for _, g := range got {
				gotS = append(gotS, g.String())
			}
			if diff := cmp.Diff(tt.want, gotS); diff != "" {
				t.Errorf("nameservers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolvConfNameservers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := ResolvConfNameservers(write("ok", "nameserver 127.0.0.53\n"))
	if err != nil || len(got) != 1 || got[0] != netip.MustParseAddrPort("127.0.0.53:53") {
		t.Errorf("ResolvConfNameservers = %v, %v; want [127.0.0.53:53]", got, err)
	}
	none := write("none", "search example\n")
	if _, err := ResolvConfNameservers(none); err == nil || !strings.Contains(err.Error(), "names no nameserver") || !strings.Contains(err.Error(), none) {
		t.Errorf("no nameserver: err = %v, want one naming the file and saying it names no nameserver", err)
	}
	if _, err := ResolvConfNameservers(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestWildcard(t *testing.T) {
	addr := netip.MustParseAddr("10.251.0.1")
	local := Wildcard("PR-42.ci.example.", addr)
	tests := []struct {
		name string
		want bool
	}{
		{"pr-42.ci.example", true},
		{"gitlab.pr-42.ci.example", true},
		{"a.b.pr-42.ci.example", true},
		{"xpr-42.ci.example", false},
		{"pr-42.ci.example.org", false},
		{"ci.example", false},
		{"pr-4.ci.example", false},
		{"", false},
	}
	for _, tt := range tests {
		got, ok := local(tt.name)
		if ok != tt.want || (ok && got != addr) {
			t.Errorf("Wildcard(%q) = %v, %v; want %v", tt.name, got, ok, tt.want)
		}
	}
}
