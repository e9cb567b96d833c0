package local

import (
	"cmp"
	"fmt"
	"net/netip"
	"strings"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/provider/local/hostdns"
	"github.com/ephemera-dev/ephemera/internal/provider/local/portproxy"
)

// netSettings are a real-node cluster's network settings, decided from its
// template's network section and the provider's defaults.
type netSettings struct {
	DNSUpstreams []netip.AddrPort
	LocalDomain  string
	DomainBase   string
	HostPorts    []portproxy.Mapping
	Reach        bool
}

// decideNetwork checks a template's network section against the
// provider's defaults; errors name the field and the form wanted.
func decideNetwork(spec v1alpha1.NetworkSpec, defaults NetworkOptions) (netSettings, error) {
	s := netSettings{
		LocalDomain: strings.TrimSuffix(strings.ToLower(cmp.Or(spec.Domain, defaults.Domain)), "."),
		DomainBase:  cmp.Or(defaults.IngressDomainBase, DefaultIngressDomainBase),
		Reach:       defaults.ReachClusters,
	}
	upstreams, field := spec.DNSUpstream, "network.dnsUpstream"
	if len(upstreams) == 0 {
		upstreams, field = defaults.DNSUpstream, "--dns-upstream"
	}
	for _, u := range upstreams {
		a, err := hostdns.ParseUpstream(strings.TrimSpace(u))
		if err != nil {
			return netSettings{}, fmt.Errorf("%s: %w", field, err)
		}
		s.DNSUpstreams = append(s.DNSUpstreams, a)
	}
	for i, pm := range spec.Ports {
		m, err := mappingOf(pm)
		if err != nil {
			return netSettings{}, fmt.Errorf("network.ports[%d]: %w", i, err)
		}
		s.HostPorts = append(s.HostPorts, m)
	}
	if err := portproxy.Check(s.HostPorts); err != nil {
		return netSettings{}, fmt.Errorf("network.ports: %w", err)
	}
	return s, nil
}

// mappingOf converts an API port mapping, defaults applied.
func mappingOf(pm v1alpha1.PortMapping) (portproxy.Mapping, error) {
	addr := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if pm.Address != "" {
		a, err := netip.ParseAddr(pm.Address)
		if err != nil {
			return portproxy.Mapping{}, fmt.Errorf("address %q is not an IP address (want like 127.0.0.1 or 0.0.0.0)", pm.Address)
		}
		addr = a
	}
	if pm.HostPort < 0 || pm.HostPort > 65535 || pm.Port < 1 || pm.Port > 65535 {
		return portproxy.Mapping{}, fmt.Errorf("hostPort %d, port %d: want hostPort 0 (any free port) to 65535 and port 1 to 65535", pm.HostPort, pm.Port)
	}
	proto := strings.ToLower(cmp.Or(pm.Protocol, "TCP"))
	return portproxy.Parse(fmt.Sprintf("%s:%d:%d/%s", bracketed(addr), pm.HostPort, pm.Port, proto))
}

func bracketed(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// MappingsToAPI converts port mappings to the API's form.
func MappingsToAPI(ms []portproxy.Mapping) []v1alpha1.PortMapping {
	var out []v1alpha1.PortMapping
	for _, m := range ms {
		out = append(out, v1alpha1.PortMapping{
			Address:  m.Address.String(),
			HostPort: int32(m.HostPort),
			Port:     int32(m.Port),
			Protocol: strings.ToUpper(m.Protocol),
		})
	}
	return out
}

// ingressDomain is the cluster's ingress domain: <name>.<local domain>
// when the cluster has one, else the wildcard-DNS name of its ingress
// address under base (10-251-0-1.sslip.io).
func ingressDomain(name, localDomain, base string, ingress netip.Addr) string {
	if localDomain != "" {
		return name + "." + localDomain
	}
	return strings.ReplaceAll(ingress.String(), ".", "-") + "." + base
}
