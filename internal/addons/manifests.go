package addons

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// fieldManager owns the fields ephemera applies server-side.
const fieldManager = "ephemera"

// retryInterval is how often an object that cannot be applied yet (its CRD or namespace is not
// there yet) is retried, and how often readiness is polled: a phase's few objects are a few
// GETs, and a phase ends at most this long after it is ready (1 s cost ~0.5 s a phase).
var retryInterval = 200 * time.Millisecond

// objectRef names an installed object.
type objectRef struct {
	gvk       schema.GroupVersionKind
	namespace string // empty: cluster-scoped, or the default namespace of a namespaced kind
	name      string
}

func refOf(u *unstructured.Unstructured) objectRef {
	return objectRef{gvk: u.GroupVersionKind(), namespace: u.GetNamespace(), name: u.GetName()}
}

// String reads "Deployment ns/name" or "CustomResourceDefinition name".
func (r objectRef) String() string {
	if r.namespace == "" {
		return r.gvk.Kind + " " + r.name
	}
	return r.gvk.Kind + " " + r.namespace + "/" + r.name
}

// manifestRefs names the objects of a YAML stream; namespace is the default of namespaced ones.
func manifestRefs(text, namespace string) ([]objectRef, error) {
	objs, err := decodeObjects(document{name: "manifest", text: text})
	if err != nil {
		return nil, err
	}
	refs := make([]objectRef, 0, len(objs))
	for _, u := range objs {
		r := refOf(u)
		if r.namespace == "" {
			r.namespace = namespace
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// cluster talks to the cluster addons are installed in.
type cluster struct {
	cfg    *rest.Config
	dyn    dynamic.Interface
	kube   kubernetes.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newCluster(cfg *rest.Config) (*cluster, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &cluster{cfg: cfg, dyn: dyn, kube: kc, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// resource maps ref to its REST resource. A namespaced object without a namespace is in default;
// the returned ref says so. A kind not known yet resets the discovery cache once.
func (c *cluster) resource(ref objectRef) (dynamic.ResourceInterface, objectRef, error) {
	m, err := c.mapper.RESTMapping(ref.gvk.GroupKind(), ref.gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(ref.gvk.GroupKind(), ref.gvk.Version)
	}
	if err != nil {
		return nil, ref, err
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		ref.namespace = ""
		return c.dyn.Resource(m.Resource), ref, nil
	}
	if ref.namespace == "" {
		ref.namespace = metav1.NamespaceDefault
	}
	return c.dyn.Resource(m.Resource).Namespace(ref.namespace), ref, nil
}

// applyOrder puts namespaces first, then CRDs, then the rest, each in the order given.
func applyOrder(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	rank := func(u *unstructured.Unstructured) int {
		switch u.GroupVersionKind().GroupKind() {
		case schema.GroupKind{Kind: "Namespace"}:
			return 0
		case schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:
			return 1
		default:
			return 2
		}
	}
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b *unstructured.Unstructured) int { return rank(a) - rank(b) })
	return out
}

// applyManifests applies objects server-side (field manager "ephemera", forcing conflicts), in
// applyOrder. An object whose kind or namespace does not exist yet (a CRD or namespace of the same
// phase still being created) is retried until ctx ends. It returns the applied objects' refs.
func (c *cluster) applyManifests(ctx context.Context, objs []*unstructured.Unstructured) ([]objectRef, error) {
	pending := applyOrder(objs)
	refs := make([]objectRef, 0, len(objs))
	for {
		var retry []*unstructured.Unstructured
		var lastErr error
		var lastRef objectRef
		for _, u := range pending {
			ref, err := c.apply(ctx, u)
			switch {
			case err == nil:
				refs = append(refs, ref)
			case meta.IsNoMatchError(err) || apierrors.IsNotFound(err) || transient(err):
				// Its CRD or namespace comes later in the phase, or a
				// webhook an earlier phase installed does not serve yet.
				retry = append(retry, u)
				lastErr, lastRef = err, ref
			default:
				return nil, &itemError{item: ref.String(), err: err}
			}
		}
		if len(retry) == 0 {
			return refs, nil
		}
		pending = retry
		select {
		case <-ctx.Done():
			return nil, &itemError{item: lastRef.String(), err: lastErr}
		case <-time.After(retryInterval):
		}
	}
}

func (c *cluster) apply(ctx context.Context, u *unstructured.Unstructured) (objectRef, error) {
	ri, ref, err := c.resource(refOf(u))
	if err != nil {
		return ref, err
	}
	obj := u.DeepCopy()
	obj.SetNamespace(ref.namespace)
	if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return ref, err
	}
	return ref, nil
}

// itemError is an error of one item of a phase (an object, a chart).
type itemError struct {
	item string
	err  error
}

func (e *itemError) Error() string { return fmt.Sprintf("%s: %v", e.item, e.err) }
func (e *itemError) Unwrap() error { return e.err }

// transient reports errors an apply retries until the phase's timeout: the
// API server or a webhook it calls is not ready yet (an operator's webhook
// answers some time after its Deployment is Available).
func transient(err error) bool {
	return apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsTimeout(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) || utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err)
}
