package lease

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
	"github.com/ephemera-dev/ephemera/internal/progress"
)

// KubeconfigKey is the key of the kubeconfig in a TestCluster's Secret.
const KubeconfigKey = "kubeconfig"

// secretRetry is the first wait before reading the kubeconfig Secret of a
// Ready TestCluster again, when the Secret is not there yet; it doubles up
// to secretRetryMax. The Secret is not watched: the server publishes it
// before it marks the TestCluster Ready, so this is only for a lagging read.
const (
	secretRetry    = 5 * time.Millisecond
	secretRetryMax = time.Second
)

// reopenDelay is the least time between two watches, so that a watch the
// server keeps closing at once does not spin.
const reopenDelay = 100 * time.Millisecond

// WaitReady watches tc until it is Ready and returns its kubeconfig. tc is
// the object as created or last read: the watch starts at its
// resourceVersion, so no change after it is missed (without one, tc is
// read first). tc is updated in place with the last state observed.
func WaitReady(ctx context.Context, c client.WithWatch, tc *v1alpha1.TestCluster, timeout time.Duration, p progress.Reporter) ([]byte, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w := &waiter{c: c, tc: tc, rv: tc.ResourceVersion}
	defer w.stop()
	for {
		w.shown = w.shown.show(p, tc)
		kubeconfig, err := w.observe(ctx)
		if kubeconfig == nil && err == nil {
			err = w.next(ctx)
			switch {
			case ctx.Err() != nil:
				err = waitError(parent, tc, timeout)
			case err == nil:
				continue
			}
		}
		p.End(err == nil)
		return kubeconfig, err
	}
}

// waiter acts on the states of a TestCluster being waited for.
type waiter struct {
	c          client.WithWatch
	tc         *v1alpha1.TestCluster
	shown      progressState
	refChecked bool

	// rv is the resourceVersion the next watch starts from: the last one
	// seen, from the object or a bookmark; empty to read the object first.
	rv string
	// watch is the open watch, if any, and opened when it was opened.
	watch  watch.Interface
	opened time.Time
	// retry is the next wait before reading the Secret again.
	retry time.Duration
}

// next returns when the TestCluster may have changed: an event for it came,
// it was read again, or, when it is Ready but its Secret was not found, the
// retry time passed. It returns an error if the TestCluster was deleted or
// cannot be watched; ctx's end shows in ctx.Err.
func (w *waiter) next(ctx context.Context) error {
	var retry <-chan time.Time
	if w.tc.Status.Phase == v1alpha1.TestClusterReady {
		w.retry = min(max(w.retry*2, secretRetry), secretRetryMax)
		t := time.NewTimer(w.retry)
		defer t.Stop()
		retry = t.C
	}
	for {
		if w.rv == "" {
			return w.get(ctx)
		}
		if w.watch == nil {
			if err := w.open(ctx); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-retry:
			return nil
		case ev, ok := <-w.watch.ResultChan():
			if !ok { // the server ends watches after a while: go on from w.rv
				w.stop()
				continue
			}
			if changed, err := w.handle(ev); changed || err != nil {
				return err
			}
		}
	}
}

// get reads the TestCluster: at the start, or when the watch's
// resourceVersion is too old to go on from.
func (w *waiter) get(ctx context.Context) error {
	key := client.ObjectKeyFromObject(w.tc)
	err := w.c.Get(ctx, key, w.tc)
	switch {
	case apierrors.IsNotFound(err):
		return w.deleted()
	case err != nil:
		return object.Error("get", "TestCluster", key, err)
	}
	w.rv = w.tc.ResourceVersion
	return nil
}

// open starts a watch on the one TestCluster from w.rv.
func (w *waiter) open(ctx context.Context) error {
	if d := reopenDelay - time.Since(w.opened); d > 0 && !w.opened.IsZero() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	key := client.ObjectKeyFromObject(w.tc)
	wi, err := w.c.Watch(ctx, &v1alpha1.TestClusterList{},
		client.InNamespace(key.Namespace),
		client.MatchingFields{"metadata.name": key.Name},
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: w.rv, AllowWatchBookmarks: true}})
	w.opened = time.Now()
	switch {
	case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
		w.rv = "" // read it again, then watch from there
		return nil
	case err != nil:
		return object.Error("watch", "TestCluster", key, err)
	}
	w.watch = wi
	return nil
}

// handle takes in one watch event: it says whether the TestCluster changed,
// or returns an error if it was deleted.
func (w *waiter) handle(ev watch.Event) (changed bool, err error) {
	switch ev.Type {
	case watch.Added, watch.Modified, watch.Deleted:
		tc, ok := ev.Object.(*v1alpha1.TestCluster)
		if !ok || tc.Name != w.tc.Name || tc.Namespace != w.tc.Namespace {
			return false, nil // not ours (a watch that ignores the field selector)
		}
		if ev.Type == watch.Deleted {
			return false, w.deleted()
		}
		*w.tc = *tc
		w.rv = tc.ResourceVersion
		return true, nil
	case watch.Bookmark:
		if obj, ok := ev.Object.(metav1.Object); ok && obj.GetResourceVersion() != "" {
			w.rv = obj.GetResourceVersion()
		}
	case watch.Error:
		if err := apierrors.FromObject(ev.Object); apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			w.rv = "" // too old to go on from: read it again
		}
		w.stop()
	}
	return false, nil
}

func (w *waiter) deleted() error {
	return fmt.Errorf("TestCluster %s/%s was deleted while waiting for it to be Ready", w.tc.Namespace, w.tc.Name)
}

// stop ends the open watch, if any.
func (w *waiter) stop() {
	if w.watch != nil {
		w.watch.Stop()
		w.watch = nil
	}
}

// observe acts on the last state of the TestCluster: it returns its
// kubeconfig once Ready, an error if waiting is pointless, or neither to
// wait on.
func (w *waiter) observe(ctx context.Context) ([]byte, error) {
	tc := w.tc
	switch {
	case tc.Status.Phase == v1alpha1.TestClusterReady:
		kubeconfig, err := readKubeconfig(ctx, w.c, tc)
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			return nil, nil // not published yet; or timed out, which the caller reports
		}
		return kubeconfig, err
	case refMissing(tc):
		// The server retries until the pool or template exists, but the
		// user most likely mistyped its name: check once and say so.
		if w.refChecked {
			return nil, nil
		}
		w.refChecked = true
		return nil, checkRef(ctx, w.c, tc)
	case tc.Status.Phase == v1alpha1.TestClusterFailed:
		return nil, fmt.Errorf("TestCluster %s/%s failed: %s; delete it with 'ephemera delete testcluster %s -n %s'", tc.Namespace, tc.Name, readyMessage(tc, "no reason given"), tc.Name, tc.Namespace)
	case tc.Status.Phase == v1alpha1.TestClusterDeleting:
		return nil, fmt.Errorf("TestCluster %s/%s is being deleted before it was Ready: %s", tc.Namespace, tc.Name, readyMessage(tc, "its lease ended or it was deleted"))
	}
	return nil, nil
}

// refMissing says whether the server reports that the pool or template a
// TestCluster names does not exist.
func refMissing(tc *v1alpha1.TestCluster) bool {
	c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionReady)
	return c != nil && (c.Reason == v1alpha1.ReasonPoolNotFound || c.Reason == v1alpha1.ReasonTemplateNotFound)
}

// checkRef confirms with the API (the server reads a cache, which may lag)
// that the pool or template tc names is missing; then it deletes tc, which
// could only wait for its maxLifetime, and says what to do.
func checkRef(ctx context.Context, c client.Client, tc *v1alpha1.TestCluster) error {
	key := client.ObjectKey{Namespace: tc.Namespace, Name: tc.Spec.PoolRef}
	var obj client.Object = &v1alpha1.ClusterPool{}
	kind, list := "ClusterPool", "pools"
	if tc.Spec.PoolRef == "" {
		key.Name, obj, kind, list = tc.Spec.TemplateRef, &v1alpha1.ClusterTemplate{}, "ClusterTemplate", "templates"
	}
	err := c.Get(ctx, key, obj)
	if !apierrors.IsNotFound(err) {
		return nil // it exists (or we cannot tell): the server will catch up
	}
	deleted := "deleted"
	if derr := c.Delete(ctx, tc); derr != nil && !apierrors.IsNotFound(derr) {
		deleted = fmt.Sprintf("could not delete it (%v)", derr)
	}
	return fmt.Errorf("%s %q not found in namespace %q (list them with 'ephemera get %s -n %s'); TestCluster %s/%s %s: %w",
		kind, key.Name, key.Namespace, list, key.Namespace, tc.Namespace, tc.Name, deleted, err)
}

// waitError says why waiting stopped, what the TestCluster was waiting
// for, and that it is kept.
func waitError(parent context.Context, tc *v1alpha1.TestCluster, timeout time.Duration) error {
	hint := ""
	if tc.Status.Phase == "" {
		hint = " (the server has not picked it up: is 'ephemera serve' running?)"
	}
	kept := fmt.Sprintf("It is kept: check it with 'ephemera get testclusters %s -n %s -o wide', delete it with 'ephemera delete testcluster %s -n %s'", tc.Name, tc.Namespace, tc.Name, tc.Namespace)
	key := client.ObjectKeyFromObject(tc)
	if err := parent.Err(); err != nil {
		return fmt.Errorf("waiting for TestCluster %s interrupted, still %s%s. %s: %w", key, waitingFor(tc), hint, kept, err)
	}
	return fmt.Errorf("TestCluster %s is not Ready after %s, still %s%s. %s", key, timeout, waitingFor(tc), hint, kept)
}

// readKubeconfig returns the kubeconfig of a Ready TestCluster; NotFound
// while its Secret is not published yet.
func readKubeconfig(ctx context.Context, c client.Client, tc *v1alpha1.TestCluster) ([]byte, error) {
	name := tc.Status.KubeconfigSecret
	if name == "" {
		return nil, apierrors.NewNotFound(corev1.Resource("secrets"), "")
	}
	key := client.ObjectKey{Namespace: tc.Namespace, Name: name}
	var s corev1.Secret
	if err := c.Get(ctx, key, &s); err != nil {
		return nil, object.Error("get", "Secret", key, err)
	}
	kc := s.Data[KubeconfigKey]
	if len(kc) == 0 {
		return nil, fmt.Errorf("secret %s of TestCluster %s/%s has no %q key", key, tc.Namespace, tc.Name, KubeconfigKey)
	}
	return kc, nil
}
