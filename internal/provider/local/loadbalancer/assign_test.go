package loadbalancer

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var (
	testRange = netip.MustParsePrefix("10.251.0.0/28")
	t0        = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// svc is a LoadBalancer Service "default/NAME" created age seconds after
// t0; opts change it.
func svc(name string, age int, opts ...func(*corev1.Service)) corev1.Service {
	s := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Second))},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// has gives a Service the status Run sets for ip.
func has(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Status.LoadBalancer.Ingress = ingressOf(netip.MustParseAddr(ip)) }
}

// hasRaw gives a Service any status ingress IP, as another writer might.
func hasRaw(ips ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

func wants(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.LoadBalancerIP = ip }
}

func class(c string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c }
}

func typ(t corev1.ServiceType) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Type = t }
}

func inNamespace(ns string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Namespace = ns }
}

func families(f ...corev1.IPFamily) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.IPFamilies = f }
}

func deleting(s *corev1.Service) {
	now := metav1.NewTime(t0.Add(time.Hour))
	s.DeletionTimestamp = &now
	s.Finalizers = []string{"example.com/hold"}
}

func ingressAnnotation(v string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Annotations = map[string]string{IngressAnnotation: v}
	}
}

// fill returns n LoadBalancer Services fill-0…, each holding one address
// from .2 on, created before anything else in a test.
func fill(n int) []corev1.Service {
	var out []corev1.Service
	a := netip.MustParseAddr("10.251.0.2")
	for i := range n {
		out = append(out, svc("fill-"+string(rune('a'+i)), -100+i, has(a.String())))
		a = a.Next()
	}
	return out
}

// got is Assign's result as name (or namespace/name outside default) →
// address, for short want tables.
func got(m map[types.NamespacedName]netip.Addr) map[string]string {
	out := map[string]string{}
	for k, a := range m {
		name := k.Name
		if k.Namespace != "default" {
			name = k.String()
		}
		out[name] = a.String()
	}
	return out
}

func TestAssign(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config // Range testRange unless set
		services []corev1.Service
		want     map[string]string
		pending  map[string]string // name → substring of why it waits
	}{
		{
			name: "none",
			want: map[string]string{},
		},
		{
			name:     "first Service gets the ingress address, the next ones from .2",
			services: []corev1.Service{svc("c", 3), svc("a", 1), svc("b", 2)},
			want:     map[string]string{"a": "10.251.0.1", "b": "10.251.0.2", "c": "10.251.0.3"},
		},
		{
			name:     "same creation time: namespace, then name",
			services: []corev1.Service{svc("b", 1), svc("a", 1, inNamespace("z")), svc("a", 1)},
			want:     map[string]string{"a": "10.251.0.1", "b": "10.251.0.2", "z/a": "10.251.0.3"},
		},
		{
			name:     "annotated Service gets the ingress address",
			services: []corev1.Service{svc("old", 1), svc("web", 2, ingressAnnotation("true"))},
			want:     map[string]string{"web": "10.251.0.1", "old": "10.251.0.2"},
		},
		{
			name:     "annotation other than true is ignored",
			services: []corev1.Service{svc("old", 1), svc("web", 2, ingressAnnotation("yes"))},
			want:     map[string]string{"old": "10.251.0.1", "web": "10.251.0.2"},
		},
		{
			name:     "annotated Service appearing later takes the ingress address; the holder moves",
			services: []corev1.Service{svc("old", 1, has("10.251.0.1")), svc("other", 2, has("10.251.0.2")), svc("web", 3, ingressAnnotation("true"))},
			want:     map[string]string{"web": "10.251.0.1", "other": "10.251.0.2", "old": "10.251.0.3"},
		},
		{
			name: "two annotated: the holder keeps it",
			services: []corev1.Service{
				svc("a", 1, ingressAnnotation("true"), has("10.251.0.2")),
				svc("b", 2, ingressAnnotation("true"), has("10.251.0.1")),
			},
			want: map[string]string{"b": "10.251.0.1", "a": "10.251.0.2"},
		},
		{
			name:     "two annotated, neither holds it: the oldest",
			services: []corev1.Service{svc("b", 2, ingressAnnotation("true")), svc("a", 1, ingressAnnotation("true"))},
			want:     map[string]string{"a": "10.251.0.1", "b": "10.251.0.2"},
		},
		{
			name:     "holder of the ingress address keeps it over an older Service without address",
			services: []corev1.Service{svc("old", 1), svc("holder", 2, has("10.251.0.1"))},
			want:     map[string]string{"holder": "10.251.0.1", "old": "10.251.0.2"},
		},
		{
			name:     "ingress address freed: the next new Service gets it, not one with an address",
			services: []corev1.Service{svc("a", 1, has("10.251.0.2")), svc("b", 2, has("10.251.0.3")), svc("new", 3)},
			want:     map[string]string{"a": "10.251.0.2", "b": "10.251.0.3", "new": "10.251.0.1"},
		},
		{
			name:     "ingress address freed and no new Service: stays reserved",
			services: []corev1.Service{svc("a", 1, has("10.251.0.2"))},
			want:     map[string]string{"a": "10.251.0.2"},
		},
		{
			name:     "existing addresses are stable, new ones fill the gaps",
			services: []corev1.Service{svc("a", 1, has("10.251.0.1")), svc("b", 2, has("10.251.0.5")), svc("c", 3, has("10.251.0.3")), svc("d", 4), svc("e", 5), svc("f", 6)},
			want:     map[string]string{"a": "10.251.0.1", "b": "10.251.0.5", "c": "10.251.0.3", "d": "10.251.0.2", "e": "10.251.0.4", "f": "10.251.0.6"},
		},
		{
			name:     "status written by someone else (no ipMode, IPv4-in-IPv6) still counts",
			services: []corev1.Service{svc("a", 1, hasRaw("example.com-not-an-ip", "::ffff:10.251.0.7")), svc("b", 2)},
			want:     map[string]string{"a": "10.251.0.7", "b": "10.251.0.1"},
		},
		{
			name: "status outside the pool is replaced",
			services: []corev1.Service{
				svc("net", 1, has("10.251.0.0")), svc("bcast", 2, has("10.251.0.15")), svc("far", 3, has("192.0.2.1")),
			},
			want: map[string]string{"net": "10.251.0.1", "bcast": "10.251.0.2", "far": "10.251.0.3"},
		},
		{
			name:     "two Services claim one address: the older keeps it",
			services: []corev1.Service{svc("young", 2, has("10.251.0.4")), svc("old", 1, has("10.251.0.4")), svc("i", 0, has("10.251.0.1"))},
			want:     map[string]string{"i": "10.251.0.1", "old": "10.251.0.4", "young": "10.251.0.2"},
		},
		{
			name:     "loadBalancerIP requested",
			services: []corev1.Service{svc("a", 1), svc("req", 2, wants("10.251.0.9")), svc("b", 3)},
			want:     map[string]string{"a": "10.251.0.1", "req": "10.251.0.9", "b": "10.251.0.2"},
		},
		{
			name:     "oldest Service requesting an address does not get the ingress address",
			services: []corev1.Service{svc("req", 1, wants("10.251.0.2")), svc("b", 2)},
			want:     map[string]string{"req": "10.251.0.2", "b": "10.251.0.1"},
		},
		{
			name:     "loadBalancerIP of the ingress address takes it from its unannotated holder",
			services: []corev1.Service{svc("holder", 1, has("10.251.0.1")), svc("req", 2, wants("10.251.0.1"))},
			want:     map[string]string{"req": "10.251.0.1", "holder": "10.251.0.2"},
		},
		{
			name:     "loadBalancerIP of the ingress address loses to the annotation",
			services: []corev1.Service{svc("req", 1, wants("10.251.0.1")), svc("web", 2, ingressAnnotation("true"))},
			want:     map[string]string{"web": "10.251.0.1"},
			pending:  map[string]string{"req": "spec.loadBalancerIP 10.251.0.1 is taken by default/web"},
		},
		{
			name:     "annotated Service requesting another address gets that one",
			services: []corev1.Service{svc("web", 1, ingressAnnotation("true"), wants("10.251.0.5")), svc("b", 2)},
			want:     map[string]string{"web": "10.251.0.5", "b": "10.251.0.1"},
		},
		{
			name:     "requested address wins over an address given without asking",
			services: []corev1.Service{svc("i", 0, has("10.251.0.1")), svc("auto", 1, has("10.251.0.2")), svc("req", 2, wants("10.251.0.2"))},
			want:     map[string]string{"i": "10.251.0.1", "req": "10.251.0.2", "auto": "10.251.0.3"},
		},
		{
			name: "two request one address: the holder keeps it, even when younger",
			services: []corev1.Service{
				svc("old", 1, wants("10.251.0.8")), svc("young", 2, wants("10.251.0.8"), has("10.251.0.8")),
			},
			want:    map[string]string{"young": "10.251.0.8"},
			pending: map[string]string{"old": "spec.loadBalancerIP 10.251.0.8 is taken by default/young"},
		},
		{
			name:     "two request one address, neither holds it: the oldest",
			services: []corev1.Service{svc("young", 2, wants("10.251.0.8")), svc("old", 1, wants("10.251.0.8"))},
			want:     map[string]string{"old": "10.251.0.8"},
			pending:  map[string]string{"young": "taken by default/old"},
		},
		{
			name: "requested address outside the pool or garbage: waits, no other address",
			services: []corev1.Service{
				svc("bcast", 1, wants("10.251.0.15")), svc("far", 2, wants("192.0.2.1")), svc("junk", 3, wants("x")), svc("ok", 4),
			},
			want: map[string]string{"ok": "10.251.0.1"},
			pending: map[string]string{
				"bcast": `spec.loadBalancerIP "10.251.0.15" is not one of 10.251.0.0/28 (10.251.0.1-10.251.0.14)`,
				"far":   `"192.0.2.1" is not one of`,
				"junk":  `"x" is not one of`,
			},
		},
		{
			name:     "requester whose status shows another address moves to the requested one",
			services: []corev1.Service{svc("i", 0), svc("req", 1, wants("10.251.0.9"), has("10.251.0.2"))},
			want:     map[string]string{"i": "10.251.0.1", "req": "10.251.0.9"},
		},
		{
			name:     "exhausted: the youngest waits",
			services: append(fill(13), svc("first", 1), svc("late", 2)),
			want: func() map[string]string {
				m := map[string]string{"first": "10.251.0.1"}
				for i, s := range fill(13) {
					m[s.Name] = "10.251.0." + strconv.Itoa(2+i)
				}
				return m
			}(),
			pending: map[string]string{"late": "no free address in 10.251.0.0/28"},
		},
		{
			name:     "exhausted: the ingress address is not handed out to a second Service",
			services: append(fill(13), svc("i", 0, has("10.251.0.1")), svc("late", 2)),
			want: func() map[string]string {
				m := map[string]string{"i": "10.251.0.1"}
				for i, s := range fill(13) {
					m[s.Name] = "10.251.0." + strconv.Itoa(2+i)
				}
				return m
			}(),
			pending: map[string]string{"late": "no free address in 10.251.0.0/28"},
		},
		{
			name:     "exhausted: the annotated Service takes the ingress address, its holder waits",
			services: append(fill(13), svc("i", 0, has("10.251.0.1")), svc("web", 2, ingressAnnotation("true"))),
			want: func() map[string]string {
				m := map[string]string{"web": "10.251.0.1"}
				for i, s := range fill(13) {
					m[s.Name] = "10.251.0." + strconv.Itoa(2+i)
				}
				return m
			}(),
			pending: map[string]string{"i": "no free address"},
		},
		{
			name: "non-LoadBalancer Services and foreign classes are skipped",
			services: []corev1.Service{
				svc("cip", 1, typ(corev1.ServiceTypeClusterIP)),
				svc("np", 2, typ(corev1.ServiceTypeNodePort)),
				svc("ext", 3, typ(corev1.ServiceTypeExternalName)),
				svc("metal", 4, class("metallb.io/metallb"), has("10.251.0.3")),
				svc("ours", 5, class(Class)),
				svc("plain", 6),
			},
			want: map[string]string{"ours": "10.251.0.1", "plain": "10.251.0.2"},
		},
		{
			name: "IPv6-only Service is skipped by an IPv4 range; dual-stack is served",
			services: []corev1.Service{
				svc("v6", 1, families(corev1.IPv6Protocol)),
				svc("dual", 2, families(corev1.IPv6Protocol, corev1.IPv4Protocol)),
			},
			want: map[string]string{"dual": "10.251.0.1"},
		},
		{
			name: "a deleted Service frees its address: the next new one gets it",
			// "b" held .2 and is gone (absent from the list).
			services: []corev1.Service{svc("a", 1, has("10.251.0.1")), svc("c", 3, has("10.251.0.3")), svc("d", 4)},
			want:     map[string]string{"a": "10.251.0.1", "c": "10.251.0.3", "d": "10.251.0.2"},
		},
		{
			name:     "a Service switched to ClusterIP frees its address",
			services: []corev1.Service{svc("a", 1, has("10.251.0.1")), svc("b", 2, typ(corev1.ServiceTypeClusterIP)), svc("d", 4)},
			want:     map[string]string{"a": "10.251.0.1", "d": "10.251.0.2"},
		},
		{
			name: "a Service being deleted keeps its address, even the ingress one, and gets no new one",
			services: []corev1.Service{
				svc("gone", 1, has("10.251.0.1"), deleting), svc("req", 2, wants("10.251.0.3")),
				svc("going", 3, has("10.251.0.3"), deleting), svc("empty", 4, deleting),
				svc("web", 5, ingressAnnotation("true")),
			},
			want:    map[string]string{"gone": "10.251.0.1", "going": "10.251.0.3", "web": "10.251.0.2"},
			pending: map[string]string{"req": "taken by default/going", "empty": "being deleted"},
		},
		{
			name:     "configured ingress address",
			cfg:      Config{Range: testRange, Ingress: netip.MustParseAddr("10.251.0.14")},
			services: []corev1.Service{svc("a", 1), svc("b", 2)},
			want:     map[string]string{"a": "10.251.0.14", "b": "10.251.0.1"},
		},
		{
			name:     "small range",
			cfg:      Config{Range: netip.MustParsePrefix("10.251.0.16/30")},
			services: []corev1.Service{svc("a", 1), svc("b", 2), svc("c", 3)},
			want:     map[string]string{"a": "10.251.0.17", "b": "10.251.0.18"},
			pending:  map[string]string{"c": "no free address in 10.251.0.16/30"},
		},
		{
			name:     "IPv6 range",
			cfg:      Config{Range: netip.MustParsePrefix("fd00:251::/124")},
			services: []corev1.Service{svc("a", 1), svc("b", 2, families(corev1.IPv6Protocol)), svc("v4", 3, families(corev1.IPv4Protocol))},
			want:     map[string]string{"a": "fd00:251::1", "b": "fd00:251::2"},
		},
		{
			name:     "invalid config assigns nothing",
			cfg:      Config{Range: netip.MustParsePrefix("10.251.0.1/28")},
			services: []corev1.Service{svc("a", 1)},
			want:     map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if !cfg.Range.IsValid() {
				cfg.Range = testRange
			}
			if diff := cmp.Diff(tt.want, got(Assign(tt.services, cfg))); diff != "" {
				t.Errorf("Assign (-want +got):\n%s", diff)
			}
			p, err := cfg.pool()
			if err != nil {
				return
			}
			d := p.assign(tt.services)
			for k, why := range d.pending {
				name := k.Name
				if tt.pending[name] == "" {
					t.Errorf("%s waits (%s), want it decided", name, why)
				} else if !strings.Contains(why, tt.pending[name]) {
					t.Errorf("%s waits because %q, want %q in it", name, why, tt.pending[name])
				}
			}
			for name := range tt.pending {
				if _, ok := d.pending[types.NamespacedName{Namespace: "default", Name: name}]; !ok {
					t.Errorf("%s does not wait, want it to", name)
				}
			}
			// Assign is stable: applied to its own result, it
			// decides the same.
			again := make([]corev1.Service, len(tt.services))
			for i, s := range tt.services {
				s = *s.DeepCopy()
				s.Status = corev1.ServiceStatus{}
				if a, ok := d.addrs[keyOf(&s)]; ok {
					s.Status.LoadBalancer.Ingress = ingressOf(a)
				}
				again[i] = s
			}
			if diff := cmp.Diff(got(d.addrs), got(Assign(again, cfg))); diff != "" {
				t.Errorf("Assign on its own result moved addresses (-first +second):\n%s", diff)
			}
		})
	}
}

func TestIngressAddr(t *testing.T) {
	for r, want := range map[string]string{
		"10.251.0.0/28":  "10.251.0.1",
		"10.251.0.16/28": "10.251.0.17",
		"10.251.0.18/28": "10.251.0.17", // masked
		"fd00:251::/124": "fd00:251::1",
	} {
		if got := IngressAddr(netip.MustParsePrefix(r)); got.String() != want {
			t.Errorf("IngressAddr(%s) = %s, want %s", r, got, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "invalid address range"},
		{Config{Range: netip.MustParsePrefix("10.251.0.1/28")}, "not a network address (10.251.0.0/28)"},
		{Config{Range: netip.MustParsePrefix("10.251.0.0/31")}, "too small"},
		{Config{Range: netip.MustParsePrefix("::ffff:10.251.0.0/124")}, "invalid address range"},
		{Config{Range: testRange, Ingress: netip.MustParseAddr("10.251.0.15")}, "ingress address 10.251.0.15 is not one of 10.251.0.0/28 (10.251.0.1-10.251.0.14)"},
		{Config{Range: testRange, Ingress: netip.MustParseAddr("fd00::1")}, "not one of"},
	}
	for _, tt := range tests {
		_, err := tt.cfg.pool()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("pool of %+v = %v, want an error with %q", tt.cfg, err, tt.want)
		}
		if err := Run(t.Context(), nil, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run with %+v = %v, want an error with %q", tt.cfg, err, tt.want)
		}
	}
	if _, err := (Config{Range: netip.MustParsePrefix("10.251.0.0/30")}).pool(); err != nil {
		t.Errorf("a /30 has two addresses: %v", err)
	}
}
