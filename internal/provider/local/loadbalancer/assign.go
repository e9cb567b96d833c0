package loadbalancer

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Class is the spec.loadBalancerClass this package serves. Services without
// a class are served too; Services of any other class are left alone.
const Class = "ephemera.dev/local"

// IngressAnnotation is the annotation that, set to "true" on a
// LoadBalancer Service, gives that Service the cluster's ingress address.
const IngressAnnotation = "ephemera.dev/ingress"

// Config says which addresses a cluster's LoadBalancer Services get.
type Config struct {
	// Range is the cluster's address range, such as 10.251.0.0/28, in
	// its masked form. Its first and last addresses are not given out; the
	// ones between are the pool (10.251.0.1 to 10.251.0.14).
	Range netip.Prefix
	// Ingress is the cluster's ingress address, a pool address reserved
	// for one Service; the zero Addr means IngressAddr(Range).
	Ingress netip.Addr
	// Logf, when set, receives the controller's log lines (Run only).
	Logf func(format string, args ...any)
}

// IngressAddr returns the default ingress address of the range r: the
// first address after its network address (10.251.0.1 for 10.251.0.0/28).
func IngressAddr(r netip.Prefix) netip.Addr {
	return r.Masked().Addr().Next()
}

// Assign returns the address every LoadBalancer Service among services
// should have; a Service missing from the map gets none (it is not served,
// or waits for an address). It is a pure function of the Services' specs,
// annotations, creation times, deletion marks and current status, so that
// the controller's decisions survive its restarts:
//
//   - Served are Services of type LoadBalancer whose spec.loadBalancerClass
//     is unset or Class, and whose spec.ipFamilies, when set, include the
//     range's family. Services are taken oldest first (creationTimestamp,
//     then namespace/name).
//   - A Service being deleted keeps the pool address its status shows (so
//     that no two live Services share one) and gets nothing new.
//   - The ingress address goes to, in this order: a Service annotated
//     IngressAnnotation "true"; one whose spec.loadBalancerIP is the ingress
//     address; the Service whose status shows it; the oldest Service
//     without an address and without spec.loadBalancerIP. Within a rank the
//     Service that holds it wins, then the oldest. So when an annotated
//     Service appears after another took the ingress address, the address
//     moves to the annotated one (the annotation is explicit) and the
//     other gets a new address like any new Service.
//   - A Service with spec.loadBalancerIP gets exactly that address when it
//     is a pool address and no one ranked before it (the ingress holder, a
//     Service already holding it with that request, an older requester)
//     has it; otherwise it waits. A request wins over an address another
//     Service was given without asking, which then gets a new one.
//   - Any other Service keeps the pool address its status shows unless an
//     older Service kept it or someone requested it.
//   - The rest get the lowest free pool address other than the ingress
//     address, oldest first, while any is left.
//
// A Service that is gone, or no longer of type LoadBalancer, is not in
// services' decisions, so its address is free again. An invalid cfg (see
// Run) assigns nothing.
func Assign(services []corev1.Service, cfg Config) map[types.NamespacedName]netip.Addr {
	p, err := cfg.pool()
	if err != nil {
		return map[types.NamespacedName]netip.Addr{}
	}
	return p.assign(services).addrs
}

// pool is the addresses between first and last, inclusive, of prefix.
type pool struct {
	prefix      netip.Prefix
	first, last netip.Addr
	ingress     netip.Addr
}

func (c Config) pool() (pool, error) {
	r := c.Range
	if !r.IsValid() || r.Addr().Is4In6() {
		return pool{}, fmt.Errorf("invalid address range %q", r)
	}
	if r != r.Masked() {
		return pool{}, fmt.Errorf("address range %s is not a network address (%s)", r, r.Masked())
	}
	if r.Bits() > r.Addr().BitLen()-2 {
		return pool{}, fmt.Errorf("address range %s is too small: no address between its first and last", r)
	}
	p := pool{prefix: r, first: r.Addr().Next(), last: lastAddr(r).Prev(), ingress: c.Ingress}
	if !p.ingress.IsValid() {
		p.ingress = p.first
	}
	if !p.contains(p.ingress) {
		return pool{}, fmt.Errorf("ingress address %s is not one of %s", p.ingress, p)
	}
	return p, nil
}

// lastAddr returns the last address of r.
func lastAddr(r netip.Prefix) netip.Addr {
	b := r.Addr().AsSlice()
	for i := r.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (p pool) contains(a netip.Addr) bool {
	return a.BitLen() == p.first.BitLen() && a.Compare(p.first) >= 0 && a.Compare(p.last) <= 0
}

// String names the pool for messages: "10.251.0.0/28 (10.251.0.1-10.251.0.14)".
func (p pool) String() string {
	return fmt.Sprintf("%s (%s-%s)", p.prefix, p.first, p.last)
}

func (p pool) family() corev1.IPFamily {
	if p.first.Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

// served reports whether s is a LoadBalancer Service of this pool.
func (p pool) served(s *corev1.Service) bool {
	if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if c := s.Spec.LoadBalancerClass; c != nil && *c != Class {
		return false
	}
	return len(s.Spec.IPFamilies) == 0 || slices.Contains(s.Spec.IPFamilies, p.family())
}

// shows returns the pool addresses s's status shows.
func (p pool) shows(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil && p.contains(a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// current returns the first pool address s's status shows.
func (p pool) current(s *corev1.Service) (netip.Addr, bool) {
	if shown := p.shows(s); len(shown) > 0 {
		return shown[0], true
	}
	return netip.Addr{}, false
}

// requested returns s's spec.loadBalancerIP, and whether it set one; the
// Addr is invalid when what it set is not an address.
func requested(s *corev1.Service) (netip.Addr, bool) {
	if s.Spec.LoadBalancerIP == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s.Spec.LoadBalancerIP)
	if err != nil {
		return netip.Addr{}, true
	}
	return a.Unmap(), true
}

func annotated(s *corev1.Service) bool {
	return s.Annotations[IngressAnnotation] == "true"
}

func keyOf(s *corev1.Service) types.NamespacedName {
	return types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
}

// decision is what assign decided: the address of each Service that gets
// one and why each other served Service waits.
type decision struct {
	addrs   map[types.NamespacedName]netip.Addr
	pending map[types.NamespacedName]string
}

func (p pool) assign(services []corev1.Service) decision {
	var lb []*corev1.Service
	for i := range services {
		if p.served(&services[i]) {
			lb = append(lb, &services[i])
		}
	}
	slices.SortFunc(lb, func(a, b *corev1.Service) int {
		return cmp.Or(
			a.CreationTimestamp.Compare(b.CreationTimestamp.Time),
			cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Name, b.Name))
	})

	d := decision{addrs: map[types.NamespacedName]netip.Addr{}, pending: map[types.NamespacedName]string{}}
	holder := map[netip.Addr]*corev1.Service{}
	give := func(s *corev1.Service, a netip.Addr) {
		d.addrs[keyOf(s)] = a
		holder[a] = s
	}
	decided := func(s *corev1.Service) bool {
		_, ok := d.addrs[keyOf(s)]
		return ok
	}
	holds := func(s *corev1.Service, a netip.Addr) bool {
		cur, ok := p.current(s)
		return ok && cur == a
	}
	var live []*corev1.Service

	// Services being deleted keep what they have.
	for _, s := range lb {
		if s.DeletionTimestamp == nil {
			live = append(live, s)
			continue
		}
		if a, ok := p.current(s); ok && holder[a] == nil {
			give(s, a)
		} else {
			d.pending[keyOf(s)] = "the Service is being deleted"
		}
	}

	// The ingress address.
	if holder[p.ingress] == nil {
		ranks := []func(*corev1.Service) bool{
			func(s *corev1.Service) bool {
				a, set := requested(s)
				return annotated(s) && (!set || a == p.ingress)
			},
			func(s *corev1.Service) bool {
				a, set := requested(s)
				return set && a == p.ingress
			},
			func(s *corev1.Service) bool {
				_, set := requested(s)
				return !set && holds(s, p.ingress)
			},
			func(s *corev1.Service) bool {
				_, set := requested(s)
				_, has := p.current(s)
				return !set && !has
			},
		}
	rank:
		for _, in := range ranks {
			var first *corev1.Service
			for _, s := range live {
				if !in(s) {
					continue
				}
				if holds(s, p.ingress) {
					first = s
					break
				}
				if first == nil {
					first = s
				}
			}
			if first != nil {
				give(first, p.ingress)
				break rank
			}
		}
	}

	// Requested addresses: those holding theirs first, then the oldest.
	for _, holding := range []bool{true, false} {
		for _, s := range live {
			a, set := requested(s)
			if !set || decided(s) || holds(s, a) != holding {
				continue
			}
			switch {
			case !p.contains(a):
				d.pending[keyOf(s)] = fmt.Sprintf("spec.loadBalancerIP %q is not one of %s", s.Spec.LoadBalancerIP, p)
			case holder[a] != nil:
				d.pending[keyOf(s)] = fmt.Sprintf("spec.loadBalancerIP %s is taken by %s", a, keyOf(holder[a]))
			default:
				give(s, a)
			}
		}
	}

	// Addresses given earlier stay.
	for _, s := range live {
		if _, set := requested(s); set || decided(s) {
			continue
		}
		if a, ok := p.current(s); ok && a != p.ingress && holder[a] == nil {
			give(s, a)
		}
	}

	// New addresses, lowest first.
	next := p.first
	for _, s := range live {
		if _, set := requested(s); set || decided(s) {
			continue
		}
		for p.contains(next) && (next == p.ingress || holder[next] != nil) {
			next = next.Next()
		}
		if !p.contains(next) {
			d.pending[keyOf(s)] = fmt.Sprintf("no free address in %s", p.prefix)
			continue
		}
		give(s, next)
	}
	return d
}
