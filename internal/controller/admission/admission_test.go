package admission

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

func TestWaitingInOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	tc := func(ns, name string, at time.Duration, prio v1alpha1.Priority, cluster string, deleting bool) v1alpha1.TestCluster {
		o := v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.Time{Time: t0.Add(at)}},
			Spec: v1alpha1.TestClusterSpec{PoolRef: "ci", Priority: prio, ClusterName: cluster}}
		if deleting {
			o.DeletionTimestamp = &metav1.Time{Time: t0}
		}
		return o
	}
	in := []v1alpha1.TestCluster{
		tc("a", "late-normal", 3*time.Second, "", "", false),
		tc("a", "low-first", 0, v1alpha1.PriorityLow, "", false),
		tc("b", "same-second", time.Second, v1alpha1.PriorityNormal, "", false),
		tc("a", "same-second", time.Second, v1alpha1.PriorityNormal, "", false),
		tc("a", "bound", 0, v1alpha1.PriorityHigh, "c1", false),
		tc("a", "deleting", 0, v1alpha1.PriorityHigh, "", true),
		tc("a", "high-late", 5*time.Second, v1alpha1.PriorityHigh, "", false),
	}
	var got []string
	for _, w := range waitingInOrder(in) {
		got = append(got, w.Namespace+"/"+w.Name)
	}
	want := []string{"a/high-late", "a/same-second", "b/same-second", "a/late-normal", "a/low-first"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestNewNameIsAShortDNSLabel(t *testing.T) {
	for _, prefix := range []string{"ci", "a.b.c", "a-very-long-pool-name-that-goes-on-and-on-and-on", "x-"} {
		name := trimPrefix(prefix) + "-" + utilrand.String(5)
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 || len(name) > 40 {
			t.Errorf("prefix %q gives %q: %v (len %d)", prefix, name, errs, len(name))
		}
	}
}

func TestSharedHostPort(t *testing.T) {
	tmpl := func(hostPorts ...int32) *v1alpha1.ClusterTemplate {
		t := &v1alpha1.ClusterTemplate{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
		for _, hp := range hostPorts {
			t.Spec.Network.Ports = append(t.Spec.Network.Ports, v1alpha1.PortMapping{HostPort: hp, Port: 80})
		}
		return t
	}
	pool := func(maxSize *int32) *v1alpha1.ClusterPool {
		return &v1alpha1.ClusterPool{Spec: v1alpha1.ClusterPoolSpec{TemplateRef: "web", MaxSize: maxSize}}
	}
	for _, tc := range []struct {
		name string
		pool *v1alpha1.ClusterPool
		tmpl *v1alpha1.ClusterTemplate
		want string // in the message; empty: no refusal
	}{
		{"no ports", pool(nil), tmpl(), ""},
		{"hostPort 0", pool(ptr(int32(5))), tmpl(0, 0), ""},
		{"fixed port, maxSize 1", pool(ptr(int32(1))), tmpl(8080), ""},
		{"fixed port, default maxSize", pool(nil), tmpl(8080), "fixed host port 8080 (spec.network.ports[0].hostPort), which the pool's clusters (maxSize 10) cannot share: set hostPort 0"},
		{"second mapping fixed", pool(ptr(int32(2))), tmpl(0, 2222), "spec.network.ports[1].hostPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sharedHostPort(tc.pool, tc.tmpl)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("sharedHostPort = %q, want a message with %q", got, tc.want)
			}
		})
	}
}

func TestBindsByQueue(t *testing.T) {
	b := func(queue, name string) Bind {
		return Bind{Queue: queue, TestCluster: &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: name}}}
	}
	got := bindsByQueue([]Bind{b("pool/a", "1"), b("ns/x", "2"), b("pool/a", "3"), b("pool/a", "4"), b("ns/x", "5")})
	var names [][]string
	for _, q := range got {
		var n []string
		for _, x := range q {
			n = append(n, x.Queue+":"+x.TestCluster.Name)
		}
		names = append(names, n)
	}
	want := [][]string{{"pool/a:1", "pool/a:3", "pool/a:4"}, {"ns/x:2", "ns/x:5"}}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("bindsByQueue (-want +got):\n%s", d)
	}
}
