package lease

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/object"
	"github.com/ephemera-dev/ephemera/internal/progress"
)

// KubeconfigKey is the key of the kubeconfig in a TestCluster's Secret.
const KubeconfigKey = "kubeconfig"

// Polling: fast while a warm claim typically binds, then steady. A Get of
// one object costs a local API server well under a millisecond.
const (
	fastPoll       = 5 * time.Millisecond
	fastPollPeriod = 500 * time.Millisecond
	poll           = 10 * time.Millisecond
)

// WaitReady polls tc until it is Ready and returns its kubeconfig. tc is
// updated in place with the last state observed.
func WaitReady(ctx context.Context, c client.Client, tc *v1alpha1.TestCluster, timeout time.Duration, p progress.Reporter) ([]byte, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w := &waiter{c: c, tc: tc}
	started := time.Now()
	timer := time.NewTimer(fastPoll)
	defer timer.Stop()
	for {
		w.shown = w.shown.show(p, tc)
		kubeconfig, err := w.observe(ctx)
		if kubeconfig == nil && err == nil {
			interval := poll
			if time.Since(started) < fastPollPeriod {
				interval = fastPoll
			}
			timer.Reset(interval)
			select {
			case <-ctx.Done():
			case <-timer.C:
				err = c.Get(ctx, client.ObjectKeyFromObject(tc), tc)
			}
			switch {
			case ctx.Err() != nil:
				err = waitError(parent, tc, timeout)
			case apierrors.IsNotFound(err):
				err = fmt.Errorf("TestCluster %s/%s was deleted while waiting for it to be Ready", tc.Namespace, tc.Name)
			case err != nil:
				err = object.Error("get", "TestCluster", client.ObjectKeyFromObject(tc), err)
			default:
				continue
			}
		}
		p.End(err == nil)
		return kubeconfig, err
	}
}

// waiter acts on the states of a TestCluster being waited for.
type waiter struct {
	c          client.Client
	tc         *v1alpha1.TestCluster
	shown      progressState
	refChecked bool
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

// WriteKubeconfig writes data to path atomically, mode 0600 in directories
// created 0700, and returns the absolute path.
func WriteKubeconfig(path string, data []byte) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	dir := filepath.Dir(abs)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".*.tmp") // mode 0600
	if err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), abs)
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write kubeconfig %s: %w", abs, werr)
	}
	return abs, nil
}
