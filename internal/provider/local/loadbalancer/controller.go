package loadbalancer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Event reasons on Services.
const (
	// ReasonAssigned: the Service got an address.
	ReasonAssigned = "AddressAssigned"
	// ReasonPending: the Service waits for an address (Warning).
	ReasonPending = "AddressPending"
)

// component names this controller as the source of its Events.
const component = "ephemera-loadbalancer"

// Retry delays after a failed sync.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 30 * time.Second
)

// Run serves the LoadBalancer Services of the cluster client talks to until
// ctx ends: it watches Services and sets the status of each served one to
// the address Assign wants for it, as status.loadBalancer.ingress
// [{ip: ADDR, ipMode: VIP}] (VIP: kube-proxy forwards the address), or to
// no ingress while it waits. It records an Event on a Service when it gets
// an address (Normal, ReasonAssigned) and when it starts waiting (Warning,
// ReasonPending, "no free address in 10.251.0.0/28"). Its first decisions
// use the status Services have, so a restarted controller keeps the
// addresses given out. It never shows one address on two Services: a
// Service losing an address is written before the one taking it. Failed
// status updates are retried with backoff. Run one per cluster; client
// needs to get, list and watch Services, update services/status and create
// Events, and is best without a Timeout (watches outlive it; with one they
// are restarted). Run returns nil when ctx ends, and an error only for an
// invalid cfg: a Range that is not a masked prefix with an address between
// its first and last, or an Ingress outside the pool.
func Run(ctx context.Context, client kubernetes.Interface, cfg Config) error {
	p, err := cfg.pool()
	if err != nil {
		return err
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}

	factory := informers.NewSharedInformerFactory(client, 0)
	services := factory.Core().V1().Services()
	informer := services.Informer()
	changed := make(chan struct{}, 1)
	kick := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick() },
		UpdateFunc: func(any, any) { kick() },
		DeleteFunc: func(any) { kick() },
	}); err != nil {
		return fmt.Errorf("watch services: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	c := &controller{
		pool:     p,
		client:   client,
		lister:   services.Lister(),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component}),
		logf:     logf,
		warned:   map[types.UID]string{},
	}
	logf("Serving LoadBalancer Services from %s, ingress address %s", p, p.ingress)

	retry := time.NewTimer(0) // the first sync
	defer retry.Stop()
	delay := minRetry
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-retry.C:
		}
		if err := c.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errConflict) {
				retry.Reset(minRetry)
				continue
			}
			logf("Syncing LoadBalancer Services failed, retrying in %s: %v", delay, err)
			retry.Reset(delay)
			delay = min(2*delay, maxRetry)
			continue
		}
		delay = minRetry
	}
}

type controller struct {
	pool     pool
	client   kubernetes.Interface
	lister   listerscorev1.ServiceLister
	recorder record.EventRecorder
	logf     func(string, ...any)
	// warned holds the last pending message recorded per Service, so
	// that a Service waiting for the same reason gets one Event.
	warned map[types.UID]string
}

// sync brings every served Service's status to what Assign decides, from
// the informer's view of the Services.
func (c *controller) sync(ctx context.Context) error {
	cached, err := c.lister.List(labels.Everything())
	if err != nil {
		return err
	}
	all := make([]corev1.Service, len(cached))
	uids := map[types.UID]bool{}
	for i, s := range cached {
		all[i] = *s
		uids[s.UID] = true
	}
	for uid := range c.warned {
		if !uids[uid] {
			delete(c.warned, uid)
		}
	}
	slices.SortFunc(all, func(a, b corev1.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	d := c.pool.assign(all)

	var writes []write
	shown := map[netip.Addr]types.NamespacedName{}
	current := map[types.NamespacedName]*corev1.Service{}
	for i := range all {
		s := &all[i]
		if !c.pool.served(s) {
			// The API server clears the status of a Service that
			// stops being a LoadBalancer; another class is not ours.
			continue
		}
		key := keyOf(s)
		current[key] = s
		from := c.pool.shows(s)
		for _, a := range from {
			shown[a] = key
		}
		if a, ok := d.addrs[key]; ok {
			delete(c.warned, s.UID)
			if !hasOnly(s, a) {
				writes = append(writes, write{key: key, from: from, to: a})
			}
			continue
		}
		if s.DeletionTimestamp != nil {
			continue
		}
		why := d.pending[key]
		if len(s.Status.LoadBalancer.Ingress) > 0 {
			writes = append(writes, write{key: key, from: from, why: why})
		}
		if c.warned[s.UID] != why {
			c.warned[s.UID] = why
			c.logf("Service %s waits for an address: %s", key, why)
			c.recorder.Event(s, corev1.EventTypeWarning, ReasonPending, why)
		}
	}

	var errs []error
	conflicts := 0
	for _, w := range sequence(writes, shown) {
		if k, ok := shown[w.to]; ok && k != w.key && !w.force {
			// The write that was to free w.to failed.
			continue
		}
		var ingress []corev1.LoadBalancerIngress
		if w.to.IsValid() {
			ingress = ingressOf(w.to)
		}
		s, err := c.setStatus(ctx, current[w.key], ingress)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// The informer brings the change.
			conflicts++
			continue
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		current[w.key] = s
		for _, a := range w.from {
			if shown[a] == w.key {
				delete(shown, a)
			}
		}
		if !w.to.IsValid() {
			c.logf("Took %v from Service %s: %s", w.from, w.key, w.why)
			continue
		}
		shown[w.to] = w.key
		what := w.to.String()
		if w.to == c.pool.ingress {
			what += " (the cluster's ingress address)"
		}
		c.logf("Assigned %s to Service %s", what, w.key)
		c.recorder.Eventf(s, corev1.EventTypeNormal, ReasonAssigned, "Assigned %s", what)
	}
	if len(errs) > 0 {
		return fmt.Errorf("update the status of %d Services: %w", len(errs), errors.Join(errs...))
	}
	if conflicts > 0 {
		return errConflict
	}
	return nil
}

// errConflict says that a sync met Services changed or deleted since the
// informer saw them: it is retried soon, without a log line.
var errConflict = errors.New("services changed during the sync")

// setStatus replaces s's load-balancer ingress and returns the updated
// Service. One changed since the informer saw it fails with a conflict,
// one that is gone with not found.
func (c *controller) setStatus(ctx context.Context, s *corev1.Service, ingress []corev1.LoadBalancerIngress) (*corev1.Service, error) {
	s = s.DeepCopy()
	s.Status.LoadBalancer.Ingress = ingress
	updated, err := c.client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{FieldManager: component})
	if err != nil {
		return nil, fmt.Errorf("set the load-balancer status of Service %s: %w", keyOf(s), err)
	}
	return updated, nil
}

func ingressOf(a netip.Addr) []corev1.LoadBalancerIngress {
	vip := corev1.LoadBalancerIPModeVIP
	return []corev1.LoadBalancerIngress{{IP: a.String(), IPMode: &vip}}
}

// hasOnly reports whether s's status is exactly the ingress Run sets for a.
func hasOnly(s *corev1.Service, a netip.Addr) bool {
	return slices.EqualFunc(s.Status.LoadBalancer.Ingress, ingressOf(a), func(x, y corev1.LoadBalancerIngress) bool {
		return x.IP == y.IP && x.Hostname == y.Hostname && len(x.Ports) == 0 &&
			x.IPMode != nil && *x.IPMode == *y.IPMode
	})
}
