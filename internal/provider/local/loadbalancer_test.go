package local

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
	"github.com/ephemera-dev/ephemera/internal/provider/local/loadbalancer"
)

// lbAssignWithin bounds the time from a Service's create to its address.
const lbAssignWithin = 2 * time.Second

// TestLoadBalancerController runs the loadbalancer controller against a
// real control-plane-only cluster: LoadBalancer Services get addresses of
// the range (the first one the ingress address) within lbAssignWithin, a
// ClusterIP Service and one of a foreign class none; the address of a
// deleted Service, and of one switched to ClusterIP, goes to the next new
// one; spec.loadBalancerIP is honoured; a restarted controller keeps every
// assignment without writing; an annotated Service takes the ingress
// address; an exhausted range leaves a Service pending with a Warning Event
// until an address is freed. It logs the create → address latencies.
func TestLoadBalancerController(t *testing.T) {
	opts := controlPlaneOptions(t)
	ctx := t.Context()
	const name = "lbctl"
	p := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Delete(ctx, name); err != nil {
			t.Errorf("cleanup: delete: %v", err)
		}
	})
	zero := int32(0)
	spec := v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: &zero, Simulated: &zero}}
	if _, err := lifecycle.Create(ctx, p, name, spec, lifecycle.CreateOptions{Wait: realNodeWait}); err != nil {
		t.Fatalf("create: %v", err)
	}
	kubeconfig, err := p.Kubeconfig(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	restCfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// As the supervisor's client, without its Timeout: watches outlive it.
	restCfg.QPS, restCfg.Burst = 500, 1000
	client := kubernetes.NewForConfigOrDie(restCfg)

	w := watchServices(t, client)
	cfg := loadbalancer.Config{Range: netip.MustParsePrefix("10.251.0.0/28"), Logf: t.Logf}
	stop := startLB(t, client, cfg)

	lb := &lbTest{t: t, client: client, w: w, created: map[string]time.Time{}}
	for _, n := range []string{"lb-a", "lb-b", "lb-c"} {
		lb.create(n, nil)
	}
	lb.create("cip", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
	lb.create("other", func(s *corev1.Service) { c := "example.com/other"; s.Spec.LoadBalancerClass = &c })
	a, b, c := lb.addr("lb-a"), lb.addr("lb-b"), lb.addr("lb-c")
	if a != "10.251.0.1" || b != "10.251.0.2" || c != "10.251.0.3" {
		t.Errorf("lb-a, lb-b, lb-c got %s, %s, %s; want 10.251.0.1 (the ingress address), .2, .3", a, b, c)
	}

	// A deleted Service's address goes to the next new one.
	if err := client.CoreV1().Services("default").Delete(ctx, "lb-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	lb.waitGone("lb-b")
	lb.create("lb-d", nil)
	if got := lb.addr("lb-d"); got != b {
		t.Errorf("lb-d got %s, want %s of the deleted lb-b", got, b)
	}

	// So does the address of a Service that stops being a LoadBalancer.
	lb.update("lb-c", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
	lb.waitStatus("lb-c", "")
	lb.create("lb-e", nil)
	if got := lb.addr("lb-e"); got != c {
		t.Errorf("lb-e got %s, want %s of lb-c, now a ClusterIP Service", got, c)
	}

	lb.create("lb-req", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.251.0.9" })
	if got := lb.addr("lb-req"); got != "10.251.0.9" {
		t.Errorf("lb-req asked for 10.251.0.9 and got %s", got)
	}

	// A restarted controller keeps every address and writes nothing.
	stop()
	before := w.versions()
	stop = startLB(t, client, cfg)
	lb.create("lb-f", nil)
	if got := lb.addr("lb-f"); got != "10.251.0.4" {
		t.Errorf("lb-f, the first Service after the restart, got %s, want 10.251.0.4", got)
	}
	// A second Service orders the test after everything the first sync
	// after the restart wrote.
	lb.create("lb-g", nil)
	if got := lb.addr("lb-g"); got != "10.251.0.5" {
		t.Errorf("lb-g got %s, want 10.251.0.5", got)
	}
	after := w.versions()
	for n, rv := range before {
		if after[n] != rv {
			t.Errorf("the restarted controller wrote Service %s (resourceVersion %s → %s)", n, rv, after[n])
		}
	}

	// An annotated Service takes the ingress address; its holder gets the
	// next free one, first (the names sort the other way round).
	lb.create("gateway", func(s *corev1.Service) { s.Annotations = map[string]string{loadbalancer.IngressAnnotation: "true"} })
	if got := lb.addr("gateway"); got != "10.251.0.1" {
		t.Errorf("gateway, annotated %s, got %s; want the ingress address 10.251.0.1", loadbalancer.IngressAnnotation, got)
	}
	lb.waitStatus("lb-a", "10.251.0.6")

	// Exhaustion: 7 free addresses left (.7, .8, .10-.14).
	for i := range 7 {
		lb.create(fmt.Sprintf("fill-%d", i), nil)
	}
	lb.create("late", nil, true)
	lb.waitEvent("late", corev1.EventTypeWarning, loadbalancer.ReasonPending, "no free address in 10.251.0.0/28")
	if s := w.get("late"); s == nil || len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("late has status %+v, want none", s)
	}
	freed := lb.addr("fill-3")
	if err := client.CoreV1().Services("default").Delete(ctx, "fill-3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	lb.waitStatus("late", freed)
	lb.waitEvent("lb-a", corev1.EventTypeNormal, loadbalancer.ReasonAssigned, "Assigned 10.251.0.6")

	// None of this touched the ClusterIP Service or the foreign class.
	for _, n := range []string{"cip", "other"} {
		if s := w.get(n); s == nil || len(s.Status.LoadBalancer.Ingress) != 0 || w.everAssigned(n) {
			t.Errorf("%s got a load-balancer status: %+v", n, s)
		}
	}
	// No two Services ever showed one address.
	if s := w.shared(); s != "" {
		t.Error(s)
	}
	stop()
	lb.report()
}

// startLB runs loadbalancer.Run until the returned stop is called (or the
// test ends); Run must return nil.
func startLB(t *testing.T, client kubernetes.Interface, cfg loadbalancer.Config) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- loadbalancer.Run(ctx, client, cfg) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("loadbalancer.Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// serviceWatch is the test's own view of the Services in "default", with
// the time each first showed each load-balancer address.
type serviceWatch struct {
	mu       sync.Mutex
	svcs     map[string]*corev1.Service
	assigned map[string]time.Time // "name ip" → first seen
	sharing  string               // the first time two Services showed one IP
}

func watchServices(t *testing.T, client kubernetes.Interface) *serviceWatch {
	w := &serviceWatch{svcs: map[string]*corev1.Service{}, assigned: map[string]time.Time{}}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().Services().Informer()
	set := func(obj any) {
		now := time.Now()
		s, ok := obj.(*corev1.Service)
		if !ok {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.svcs[s.Name] = s
		for _, in := range s.Status.LoadBalancer.Ingress {
			if k := s.Name + " " + in.IP; w.assigned[k].IsZero() {
				w.assigned[k] = now
			}
		}
		showing := map[string]string{}
		for name, s := range w.svcs {
			for _, in := range s.Status.LoadBalancer.Ingress {
				if other, ok := showing[in.IP]; ok && w.sharing == "" {
					w.sharing = fmt.Sprintf("Services %s and %s both showed %s at once", name, other, in.IP)
				}
				showing[in.IP] = name
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if s, ok := obj.(*corev1.Service); ok {
				w.mu.Lock()
				delete(w.svcs, s.Name)
				w.mu.Unlock()
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	t.Cleanup(func() { cancel(); factory.Shutdown() })
	if !cache.WaitForCacheSync(t.Context().Done(), inf.HasSynced) {
		t.Fatal("the test's Service informer did not sync")
	}
	return w
}

func (w *serviceWatch) get(name string) *corev1.Service {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.svcs[name]
}

func (w *serviceWatch) all() map[string]*corev1.Service {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]*corev1.Service{}
	for k, v := range w.svcs {
		out[k] = v
	}
	return out
}

// shared says when two Services first showed one address, if they did.
func (w *serviceWatch) shared() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sharing
}

func (w *serviceWatch) versions() map[string]string {
	out := map[string]string{}
	for n, s := range w.all() {
		out[n] = s.ResourceVersion
	}
	return out
}

// firstSeen returns when name first showed ip.
func (w *serviceWatch) firstSeen(name, ip string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.assigned[name+" "+ip]
}

func (w *serviceWatch) everAssigned(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.assigned {
		if strings.HasPrefix(k, name+" ") {
			return true
		}
	}
	return false
}

// lbTest creates Services and checks their addresses.
type lbTest struct {
	t         *testing.T
	client    kubernetes.Interface
	w         *serviceWatch
	created   map[string]time.Time
	latencies []time.Duration
}

// create makes a Service "default/name" of type LoadBalancer on port 80,
// changed by mutate, and waits until the test sees it; a LoadBalancer
// Service of ours must then get an address within lbAssignWithin unless
// pending is given.
func (l *lbTest) create(name string, mutate func(*corev1.Service), pending ...bool) {
	l.t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
	if mutate != nil {
		mutate(s)
	}
	start := time.Now()
	if _, err := l.client.CoreV1().Services("default").Create(l.t.Context(), s, metav1.CreateOptions{}); err != nil {
		l.t.Fatalf("create Service %s: %v", name, err)
	}
	l.created[name] = start
	waitFor(l.t, "the test to see Service "+name, func() (bool, error) { return l.w.get(name) != nil, nil })
	if s.Spec.Type != corev1.ServiceTypeLoadBalancer || s.Spec.LoadBalancerClass != nil || len(pending) > 0 {
		return
	}
	l.addr(name)
}

// addr waits until name has a load-balancer address of the range and
// returns it, recording the create → address latency the first time.
func (l *lbTest) addr(name string) string {
	l.t.Helper()
	deadline := l.created[name].Add(lbAssignWithin)
	if l.created[name].IsZero() {
		deadline = time.Now().Add(lbAssignWithin)
	}
	for {
		if s := l.w.get(name); s != nil && len(s.Status.LoadBalancer.Ingress) > 0 {
			in := s.Status.LoadBalancer.Ingress
			a, err := netip.ParseAddr(in[0].IP)
			if len(in) != 1 || err != nil || !netip.MustParsePrefix("10.251.0.0/28").Contains(a) || in[0].IPMode == nil || *in[0].IPMode != corev1.LoadBalancerIPModeVIP {
				l.t.Fatalf("Service %s has load-balancer status %+v, want one ingress with an IP of 10.251.0.0/28 and ipMode VIP", name, in)
			}
			if seen := l.w.firstSeen(name, in[0].IP); !l.created[name].IsZero() {
				l.latencies = append(l.latencies, seen.Sub(l.created[name]))
				l.created[name] = time.Time{}
			}
			return in[0].IP
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("Service %s has no address %s after its create: %+v", name, lbAssignWithin, l.w.get(name))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStatus waits until name's only load-balancer IP is ip ("" for none).
func (l *lbTest) waitStatus(name, ip string) {
	l.t.Helper()
	var last string
	waitFor(l.t, fmt.Sprintf("Service %s to have address %q", name, ip), func() (bool, error) {
		s := l.w.get(name)
		if s == nil {
			return false, nil
		}
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		last = fmt.Sprint(ips)
		return slices.Equal(ips, []string{ip}) || ip == "" && len(ips) == 0, nil
	}, func() string { return "it has " + last })
}

func (l *lbTest) waitGone(name string) {
	l.t.Helper()
	waitFor(l.t, "Service "+name+" to go", func() (bool, error) { return l.w.get(name) == nil, nil })
}

func (l *lbTest) update(name string, mutate func(*corev1.Service)) {
	l.t.Helper()
	services := l.client.CoreV1().Services("default")
	waitFor(l.t, "an update of Service "+name, func() (bool, error) {
		s, err := services.Get(l.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		mutate(s)
		_, err = services.Update(l.t.Context(), s, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// waitEvent waits for an Event on Service name with the type and reason
// and a message containing msg.
func (l *lbTest) waitEvent(name, typ, reason, msg string) {
	l.t.Helper()
	var seen []string
	waitFor(l.t, fmt.Sprintf("a %s %s Event on Service %s", typ, reason, name), func() (bool, error) {
		events, err := l.client.CoreV1().Events("default").List(l.t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.kind=Service,involvedObject.name=" + name})
		if err != nil {
			return false, err
		}
		seen = nil
		for _, e := range events.Items {
			seen = append(seen, fmt.Sprintf("%s %s %q (source %s)", e.Type, e.Reason, e.Message, e.Source.Component))
			if e.Type == typ && e.Reason == reason && strings.Contains(e.Message, msg) {
				return true, nil
			}
		}
		return false, nil
	}, func() string { return fmt.Sprintf("events %v", seen) })
}

// report logs the create → address latencies.
func (l *lbTest) report() {
	d := slices.Clone(l.latencies)
	slices.Sort(d)
	if len(d) == 0 {
		return
	}
	l.t.Logf("create → address latency of %d Services: min %s, p50 %s, max %s", len(d), d[0], d[len(d)/2], d[len(d)-1])
}
