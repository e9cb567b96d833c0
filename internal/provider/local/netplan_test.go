package local

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/provider/local/portproxy"
)

// TestDecideNetwork: a template's network section wins over the
// provider's defaults (serve's or create's flags) field by field; bad
// values are refused naming the field.
func TestDecideNetwork(t *testing.T) {
	defaults := NetworkOptions{DNSUpstream: []string{"127.0.0.155"}, Domain: "serve.test", IngressDomainBase: "nip.test", ReachClusters: true}
	loopback := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		name     string
		spec     v1alpha1.NetworkSpec
		defaults NetworkOptions
		want     netSettings
		err      string
	}{
		{name: "defaults", defaults: defaults, want: netSettings{
			DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.155:53")}, LocalDomain: "serve.test", DomainBase: "nip.test", Reach: true}},
		{name: "template over defaults", defaults: defaults,
			spec: v1alpha1.NetworkSpec{DNSUpstream: []string{"127.0.0.154:5353"}, Domain: "CI.test.", Ports: []v1alpha1.PortMapping{{HostPort: 0, Port: 80}}},
			want: netSettings{DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.154:5353")}, LocalDomain: "ci.test", DomainBase: "nip.test", Reach: true,
				HostPorts: []portproxy.Mapping{{Address: loopback, HostPort: 0, Port: 80, Protocol: "tcp"}}}},
		{name: "no defaults", want: netSettings{DomainBase: DefaultIngressDomainBase}},
		{name: "bad template upstream", defaults: defaults, spec: v1alpha1.NetworkSpec{DNSUpstream: []string{"dns.example"}}, err: "network.dnsUpstream: DNS upstream"},
		{name: "bad default upstream", defaults: NetworkOptions{DNSUpstream: []string{"dns.example"}}, err: "--dns-upstream: DNS upstream"},
		{name: "bad port address", spec: v1alpha1.NetworkSpec{Ports: []v1alpha1.PortMapping{{Port: 80}, {Address: "localhost", Port: 81}}}, err: "network.ports[1]: address"},
		{name: "one host port twice", spec: v1alpha1.NetworkSpec{Ports: []v1alpha1.PortMapping{{HostPort: 18080, Port: 80}, {HostPort: 18080, Port: 81}}}, err: "network.ports:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decideNetwork(tt.spec, tt.defaults)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("decideNetwork = %+v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); diff != "" {
				t.Errorf("decideNetwork (-want +got):\n%s", diff)
			}
		})
	}
}
