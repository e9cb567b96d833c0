// Package testcluster reconciles TestClusters: it builds the clusters of
// template requests, publishes kubeconfigs, enforces leases and deletes
// the cluster when the lease ends.
package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/metrics"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/failpoint"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// Finalizer keeps a TestCluster until its cluster is deleted.
const Finalizer = "ephemera.dev/cluster"

// KubeconfigKey is the key of the kubeconfig in the Secret.
const KubeconfigKey = "kubeconfig"

// recheck is how often a Ready TestCluster's cluster is looked at again.
const recheck = time.Minute

// Reconciler reconciles TestClusters.
type Reconciler struct {
	// Client reads through the manager's cache and writes to the API.
	Client ctrl.Client
	// Provisioner builds and deletes the clusters.
	Provisioner *provision.Provisioner
	// Server is this server instance's name, recorded on its clusters.
	Server string
	// Limits are the server's caps on leases (see ExpiresAt).
	Limits Limits
	// Now is the clock.
	Now func() time.Time

	firstSeen sync.Map // types.UID → seenEntry, for the claim duration, until bound
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !r.Provisioner.Loaded() {
		// Until the clusters of an earlier server are known, a bound
		// cluster would look gone.
		return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	tc := &v1alpha1.TestCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, tc); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return reconcile.Result{}, ctrl.IgnoreNotFound(err)
	}
	seen, _ := r.firstSeen.LoadOrStore(tc.UID, seenEntry{key: req.NamespacedName, at: r.Now()})
	if !tc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.reconcileDelete(ctx, tc)
	}
	if !controllerutil.ContainsFinalizer(tc, Finalizer) {
		// A patch, not an update: the admission reconciler may have bound
		// the TestCluster meanwhile, and a conflict would cost a retry.
		base := tc.DeepCopy()
		controllerutil.AddFinalizer(tc, Finalizer)
		if err := r.Client.Patch(ctx, tc, ctrl.MergeFrom(base)); err != nil {
			return reconcile.Result{}, ctrl.IgnoreNotFound(err)
		}
	}
	base := tc.DeepCopy()
	res, err := r.reconcileNormal(ctx, tc, seen.(seenEntry).at)
	if tc.Status.Timings.Bound != nil {
		r.firstSeen.Delete(tc.UID)
	}
	tc.Status.ObservedGeneration = tc.Generation
	tc.Status.Phase = phaseOf(tc)
	if !equality.Semantic.DeepEqual(base.Status, tc.Status) {
		if perr := r.Client.Status().Patch(ctx, tc, ctrl.MergeFrom(base)); perr != nil && !apierrors.IsNotFound(perr) {
			return reconcile.Result{}, perr
		}
	}
	return res, err
}

func (r *Reconciler) reconcileNormal(ctx context.Context, tc *v1alpha1.TestCluster, seen time.Time) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	now := r.Now()
	tc.Status.Timings.Requested = tc.CreationTimestamp.DeepCopy()
	var bound time.Time
	if tc.Status.Timings.Bound != nil {
		bound = tc.Status.Timings.Bound.Time
	}
	expires, capped := ExpiresAt(tc, bound, r.Limits)
	tc.Status.ExpiresAt = &metav1.Time{Time: expires}
	setCapped(tc, capped)
	if !now.Before(expires) {
		logger.Info("Deleting TestCluster: its lease ended", "testcluster", klog.KObj(tc), "expiresAt", expires)
		setCondition(tc, v1alpha1.ConditionReady, false, v1alpha1.ReasonLeaseExpired, "the lease ended at "+expires.UTC().Format(time.RFC3339))
		return reconcile.Result{}, ctrl.IgnoreNotFound(r.Client.Delete(ctx, tc))
	}
	requeue := reconcile.Result{RequeueAfter: min(expires.Sub(now), recheck)}

	name := tc.Spec.ClusterName
	if name == "" {
		reason, msg := r.queued(ctx, tc)
		setCondition(tc, v1alpha1.ConditionBound, false, reason, msg)
		setCondition(tc, v1alpha1.ConditionReady, false, reason, msg)
		return requeue, nil
	}
	tc.Status.QueuePosition = 0
	st, ok := r.Provisioner.Get(name)
	// Only the server binds, and it records the TestCluster's UID on the
	// cluster (at create for a template cluster, at bind for a pool
	// cluster): a clusterName set by anyone else gets nothing.
	notOurs := fmt.Sprintf("cluster %q is not bound to this TestCluster by ephemera (spec.clusterName is set by the server, not by users); delete this TestCluster", name)
	switch {
	case ok && st.Labels[provision.LabelTestClusterUID] != string(tc.UID):
		fail(tc, v1alpha1.ReasonClusterLost, notOurs)
		return reconcile.Result{}, nil
	case !ok && tc.Spec.PoolRef != "":
		fail(tc, v1alpha1.ReasonClusterLost, fmt.Sprintf("cluster %q of pool %q is gone; delete this TestCluster and claim another", name, tc.Spec.PoolRef))
		return reconcile.Result{}, nil
	case !ok:
		tmpl := &v1alpha1.ClusterTemplate{}
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: tc.Spec.TemplateRef}, tmpl); err != nil {
			if apierrors.IsNotFound(err) {
				fail(tc, v1alpha1.ReasonTemplateNotFound, fmt.Sprintf("ClusterTemplate %q not found in namespace %q: create it, or delete this TestCluster", tc.Spec.TemplateRef, tc.Namespace))
				return reconcile.Result{RequeueAfter: 10 * time.Second}, nil
			}
			return reconcile.Result{}, err
		}
		switch c, err := r.Provisioner.Provider().Get(ctx, name); {
		case err == nil && c.Labels[provision.LabelTestClusterUID] != string(tc.UID):
			fail(tc, v1alpha1.ReasonClusterLost, notOurs)
			return reconcile.Result{}, nil
		case err != nil && !errors.Is(err, provider.ErrNotFound):
			return reconcile.Result{}, err
		}
		logger.Info("Creating cluster", "testcluster", klog.KObj(tc), "cluster", name, "template", tc.Spec.TemplateRef)
		spec := tmpl.Spec
		if tc.Spec.KubernetesVersion != "" {
			spec.KubernetesVersion = tc.Spec.KubernetesVersion
		}
		st = r.Provisioner.Ensure(name, spec, provision.TestClusterLabels(r.Server, tc), provision.AddonInputs{Namespace: tc.Namespace, Labels: tc.Labels})
	}
	if !st.Provisioned.IsZero() && tc.Status.Timings.Provisioned == nil {
		tc.Status.Timings.Provisioned = &metav1.Time{Time: st.Provisioned}
	}
	if status, reason, msg, ok := addonsCondition(st); ok {
		setCondition(tc, v1alpha1.ConditionAddonsReady, status == metav1.ConditionTrue, reason, msg)
	}
	switch st.State {
	case provision.Creating:
		msg := building(st)
		setCondition(tc, v1alpha1.ConditionBound, true, v1alpha1.ReasonProvisioning, msg)
		setCondition(tc, v1alpha1.ConditionReady, false, v1alpha1.ReasonProvisioning, msg)
		return requeue, nil
	case provision.Failed:
		if st.Adopted && tc.Spec.TemplateRef != "" && tc.Status.Timings.Bound == nil {
			// A create the last server was killed in, never handed out:
			// build it again.
			logger.Info("Rebuilding a cluster whose create was interrupted", "testcluster", klog.KObj(tc), "cluster", name, "reason", fmt.Sprint(st.Err))
			if err := r.Provisioner.Delete(ctx, name); err != nil {
				return reconcile.Result{}, err
			}
			return reconcile.Result{RequeueAfter: 10 * time.Millisecond}, nil
		}
		if errors.Is(st.Err, provider.ErrInvalidSpec) {
			fail(tc, v1alpha1.ReasonInvalidSpec, fmt.Sprintf("the template cannot be built: %v; fix it, then delete this TestCluster and create another", st.Err))
			return reconcile.Result{}, nil
		}
		fail(tc, v1alpha1.ReasonProvisionFailed, fmt.Sprintf("creating cluster %q failed: %v", name, st.Err))
		return reconcile.Result{}, nil
	case provision.Lost:
		fail(tc, v1alpha1.ReasonClusterUnhealthy, fmt.Sprintf("cluster %q stopped working: %v; the server keeps checking it, and it turns Ready again if it recovers", name, st.Err))
		return requeue, nil
	case provision.Deleting:
		fail(tc, v1alpha1.ReasonClusterLost, fmt.Sprintf("cluster %q is being deleted", name))
		return requeue, nil
	}
	if err := r.publish(ctx, tc, st); err != nil {
		var taken errSecretTaken
		if errors.As(err, &taken) {
			fail(tc, v1alpha1.ReasonProvisionFailed, taken.Error())
			return reconcile.Result{RequeueAfter: 10 * time.Second}, nil
		}
		return reconcile.Result{}, err
	}
	if tc.Status.Timings.Ready == nil {
		tc.Status.Timings.Ready = &metav1.Time{Time: st.ReadyAt}
	}
	if tc.Status.Timings.Bound == nil {
		failpoint.Inject(failpoint.TestClusterBeforeReady)
		tc.Status.Timings.Bound = &metav1.Time{Time: now}
		metrics.ClaimDuration.WithLabelValues(tc.Spec.PoolRef).Observe(now.Sub(seen).Seconds())
		logger.Info("TestCluster ready", "testcluster", klog.KObj(tc), "cluster", name, "seconds", now.Sub(seen).Seconds())
		expires, capped = ExpiresAt(tc, now, r.Limits)
		tc.Status.ExpiresAt = &metav1.Time{Time: expires}
		setCapped(tc, capped)
		requeue.RequeueAfter = min(expires.Sub(now), recheck)
	}
	tc.Status.Endpoint = st.Cluster.Endpoint
	tc.Status.KubernetesVersion = st.Cluster.KubernetesVersion
	tc.Status.Ingress = st.Cluster.Ingress
	tc.Status.Ports = st.Cluster.Ports
	msg := fmt.Sprintf("cluster %q is ready; kubeconfig in Secret %q", name, tc.Status.KubeconfigSecret)
	setCondition(tc, v1alpha1.ConditionBound, true, v1alpha1.ReasonReady, msg)
	setCondition(tc, v1alpha1.ConditionReady, true, v1alpha1.ReasonReady, msg)
	return requeue, nil
}

// queued explains what a TestCluster without a cluster waits for.
func (r *Reconciler) queued(ctx context.Context, tc *v1alpha1.TestCluster) (reason, msg string) {
	key := types.NamespacedName{Namespace: tc.Namespace, Name: tc.Spec.PoolRef}
	var obj ctrl.Object = &v1alpha1.ClusterPool{}
	kind := "ClusterPool"
	if tc.Spec.PoolRef == "" {
		key.Name, obj, kind = tc.Spec.TemplateRef, &v1alpha1.ClusterTemplate{}, "ClusterTemplate"
	}
	if err := r.Client.Get(ctx, key, obj); apierrors.IsNotFound(err) {
		reason := v1alpha1.ReasonPoolNotFound
		if kind == "ClusterTemplate" {
			reason = v1alpha1.ReasonTemplateNotFound
		}
		return reason, fmt.Sprintf("%s %q not found in namespace %q: create it, or delete this TestCluster", kind, key.Name, key.Namespace)
	}
	where := "capacity for a new cluster"
	if tc.Spec.PoolRef != "" {
		where = fmt.Sprintf("a Ready cluster of pool %q", tc.Spec.PoolRef)
	}
	if tc.Status.QueuePosition > 0 {
		return v1alpha1.ReasonQueued, fmt.Sprintf("waiting for %s (position %d)", where, tc.Status.QueuePosition)
	}
	return v1alpha1.ReasonQueued, "waiting for " + where
}

// publish writes the kubeconfig Secret, owned by the TestCluster, and
// rewrites it when the cluster's kubeconfig changed (a rebuilt cluster has
// new certificates).
func (r *Reconciler) publish(ctx context.Context, tc *v1alpha1.TestCluster, st provision.Status) error {
	name := SecretName(tc.Name)
	secret := &corev1.Secret{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: name}, secret)
	switch {
	case apierrors.IsNotFound(err):
		failpoint.Inject(failpoint.TestClusterBeforeSecret)
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:      name,
				Namespace: tc.Namespace,
				Labels:    map[string]string{provision.LabelTestCluster: tc.Name},
			},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{KubeconfigKey: st.Kubeconfig},
		}
		if err := controllerutil.SetControllerReference(tc, secret, r.Client.Scheme()); err != nil {
			return err
		}
		if err := r.Client.Create(ctx, secret); err != nil {
			return fmt.Errorf("publish kubeconfig: %w", err)
		}
	case err != nil:
		return fmt.Errorf("publish kubeconfig: %w", err)
	case !metav1.IsControlledBy(secret, tc):
		return fmt.Errorf("publish kubeconfig: %w", errSecretTaken{name})
	case !bytes.Equal(secret.Data[KubeconfigKey], st.Kubeconfig):
		base := secret.DeepCopy()
		secret.Data = map[string][]byte{KubeconfigKey: st.Kubeconfig}
		if err := r.Client.Patch(ctx, secret, ctrl.MergeFrom(base)); err != nil {
			return fmt.Errorf("publish kubeconfig: %w", err)
		}
	}
	tc.Status.KubeconfigSecret = name
	return nil
}

// SecretName is the name of a TestCluster's kubeconfig Secret.
func SecretName(testCluster string) string { return testCluster + "-kubeconfig" }

// errSecretTaken: a Secret of the kubeconfig's name exists and belongs to
// something else.
type errSecretTaken struct{ name string }

func (e errSecretTaken) Error() string {
	return fmt.Sprintf("Secret %q exists and is not this TestCluster's; delete or rename it", e.name)
}

func (r *Reconciler) reconcileDelete(ctx context.Context, tc *v1alpha1.TestCluster) error {
	if !controllerutil.ContainsFinalizer(tc, Finalizer) {
		return nil
	}
	if name := tc.Spec.ClusterName; name != "" {
		// Only the cluster this TestCluster was bound to by this server:
		// its record names this TestCluster's UID.
		owned, err := r.owns(ctx, tc, name)
		if err != nil {
			return err
		}
		if owned {
			log.FromContext(ctx).Info("Deleting cluster of TestCluster", "testcluster", klog.KObj(tc), "cluster", name)
			if err := r.Provisioner.Delete(ctx, name); err != nil {
				return err
			}
		}
	}
	secret := &corev1.Secret{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: SecretName(tc.Name)}, secret); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	case metav1.IsControlledBy(secret, tc):
		if err := r.Client.Delete(ctx, secret); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	failpoint.Inject(failpoint.TestClusterBeforeUnfinalize)
	r.firstSeen.Delete(tc.UID)
	base := tc.DeepCopy()
	controllerutil.RemoveFinalizer(tc, Finalizer)
	return ctrl.IgnoreNotFound(r.Client.Patch(ctx, tc, ctrl.MergeFrom(base)))
}

// owns says whether the cluster name is tc's: built or claimed for it by
// this server, as the cluster's own record says.
func (r *Reconciler) owns(ctx context.Context, tc *v1alpha1.TestCluster, name string) (bool, error) {
	if st, ok := r.Provisioner.Get(name); ok {
		return st.Labels[provision.LabelTestClusterUID] == string(tc.UID), nil
	}
	c, err := r.Provisioner.Provider().Get(ctx, name)
	switch {
	case errors.Is(err, provider.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return c.Labels[provision.LabelServer] == r.Server && c.Labels[provision.LabelTestClusterUID] == string(tc.UID), nil
}

type seenEntry struct {
	key types.NamespacedName
	at  time.Time
}

// forget drops what is remembered of a TestCluster that is gone.
func (r *Reconciler) forget(key types.NamespacedName) {
	r.firstSeen.Range(func(k, v any) bool {
		if e := v.(seenEntry); e.key == key {
			r.firstSeen.Delete(k)
		}
		return true
	})
}

func fail(tc *v1alpha1.TestCluster, reason, msg string) {
	setCondition(tc, v1alpha1.ConditionReady, false, reason, msg)
}

func setCondition(tc *v1alpha1.TestCluster, typ string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&tc.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: truncate(msg, 2048), ObservedGeneration: tc.Generation,
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// phaseOf derives the phase from the conditions and the spec.
func phaseOf(tc *v1alpha1.TestCluster) v1alpha1.TestClusterPhase {
	ready := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case !tc.DeletionTimestamp.IsZero() || (ready != nil && ready.Reason == v1alpha1.ReasonLeaseExpired):
		return v1alpha1.TestClusterDeleting
	case ready != nil && ready.Status == metav1.ConditionTrue:
		return v1alpha1.TestClusterReady
	case ready != nil && (ready.Reason == v1alpha1.ReasonProvisionFailed || ready.Reason == v1alpha1.ReasonClusterLost ||
		ready.Reason == v1alpha1.ReasonClusterUnhealthy || ready.Reason == v1alpha1.ReasonInvalidSpec ||
		(ready.Reason == v1alpha1.ReasonTemplateNotFound && tc.Spec.ClusterName != "")):
		return v1alpha1.TestClusterFailed
	case tc.Spec.ClusterName == "":
		return v1alpha1.TestClusterQueued
	}
	return v1alpha1.TestClusterProvisioning
}
