// Package testcluster reconciles TestClusters: it builds the clusters of
// template requests, publishes kubeconfigs, enforces leases and deletes
// the cluster when the lease ends.
package testcluster

import (
	"context"
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
	// MaxHold caps holds (see ExpiresAt).
	MaxHold time.Duration
	// Now is the clock.
	Now func() time.Time

	firstSeen sync.Map // types.UID → time.Time, for the claim duration
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	tc := &v1alpha1.TestCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, tc); err != nil {
		return reconcile.Result{}, ctrl.IgnoreNotFound(err)
	}
	seen, _ := r.firstSeen.LoadOrStore(tc.UID, r.Now())
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
	res, err := r.reconcileNormal(ctx, tc, seen.(time.Time))
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
	expires := ExpiresAt(tc, bound, r.MaxHold)
	tc.Status.ExpiresAt = &metav1.Time{Time: expires}
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
	switch {
	case ok && tc.Spec.PoolRef != "" && !ownedByPool(st.Labels, tc):
		fail(tc, v1alpha1.ReasonClusterLost, fmt.Sprintf("cluster %q is not a cluster of pool %q; spec.clusterName is set by ephemera, not by users", name, tc.Spec.PoolRef))
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
		if c, err := r.Provisioner.Provider().Get(ctx, name); err == nil && c.Labels[provision.LabelTestClusterUID] != string(tc.UID) {
			fail(tc, v1alpha1.ReasonProvisionFailed, fmt.Sprintf("a cluster named %q exists already and is not this TestCluster's; spec.clusterName is set by ephemera, not by users", name))
			return reconcile.Result{}, nil
		}
		logger.Info("Creating cluster", "testcluster", klog.KObj(tc), "cluster", name, "template", tc.Spec.TemplateRef)
		spec := tmpl.Spec
		if tc.Spec.KubernetesVersion != "" {
			spec.KubernetesVersion = tc.Spec.KubernetesVersion
		}
		st = r.Provisioner.Ensure(name, spec, provision.TestClusterLabels(r.Server, tc))
	}
	if !st.Provisioned.IsZero() && tc.Status.Timings.Provisioned == nil {
		tc.Status.Timings.Provisioned = &metav1.Time{Time: st.Provisioned}
	}
	switch st.State {
	case provision.Creating:
		msg := fmt.Sprintf("building cluster %q", name)
		setCondition(tc, v1alpha1.ConditionBound, true, v1alpha1.ReasonProvisioning, msg)
		setCondition(tc, v1alpha1.ConditionReady, false, v1alpha1.ReasonProvisioning, msg)
		return requeue, nil
	case provision.Failed:
		fail(tc, v1alpha1.ReasonProvisionFailed, fmt.Sprintf("creating cluster %q failed: %v", name, st.Err))
		return reconcile.Result{}, nil
	}
	if err := r.publish(ctx, tc, st); err != nil {
		return reconcile.Result{}, err
	}
	if tc.Status.Timings.Ready == nil {
		tc.Status.Timings.Ready = &metav1.Time{Time: st.ReadyAt}
	}
	if tc.Status.Timings.Bound == nil {
		tc.Status.Timings.Bound = &metav1.Time{Time: now}
		metrics.ClaimDuration.WithLabelValues(tc.Spec.PoolRef).Observe(now.Sub(seen).Seconds())
		logger.Info("TestCluster ready", "testcluster", klog.KObj(tc), "cluster", name, "seconds", now.Sub(seen).Seconds())
		expires = ExpiresAt(tc, now, r.MaxHold)
		tc.Status.ExpiresAt = &metav1.Time{Time: expires}
		requeue.RequeueAfter = min(expires.Sub(now), recheck)
	}
	tc.Status.Endpoint = st.Cluster.Endpoint
	tc.Status.KubernetesVersion = st.Cluster.KubernetesVersion
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

// publish writes the kubeconfig Secret, owned by the TestCluster.
func (r *Reconciler) publish(ctx context.Context, tc *v1alpha1.TestCluster, st provision.Status) error {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      tc.Name + "-kubeconfig",
			Namespace: tc.Namespace,
			Labels:    map[string]string{provision.LabelTestCluster: tc.Name},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{KubeconfigKey: st.Kubeconfig},
	}
	if err := controllerutil.SetControllerReference(tc, secret, r.Client.Scheme()); err != nil {
		return err
	}
	if tc.Status.KubeconfigSecret != secret.Name {
		if err := r.Client.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("publish kubeconfig: %w", err)
		}
		tc.Status.KubeconfigSecret = secret.Name
	}
	return nil
}

func (r *Reconciler) reconcileDelete(ctx context.Context, tc *v1alpha1.TestCluster) error {
	if !controllerutil.ContainsFinalizer(tc, Finalizer) {
		return nil
	}
	if name := tc.Spec.ClusterName; name != "" {
		// Never delete a cluster this server did not create.
		if c, err := r.Provisioner.Provider().Get(ctx, name); err != nil || c.Labels[provision.LabelServer] == r.Server {
			log.FromContext(ctx).Info("Deleting cluster of TestCluster", "testcluster", klog.KObj(tc), "cluster", name)
			if err := r.Provisioner.Delete(ctx, name); err != nil {
				return err
			}
		}
	}
	if tc.Status.KubeconfigSecret != "" {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tc.Namespace, Name: tc.Status.KubeconfigSecret}}
		if err := r.Client.Delete(ctx, secret); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	r.firstSeen.Delete(tc.UID)
	base := tc.DeepCopy()
	controllerutil.RemoveFinalizer(tc, Finalizer)
	return ctrl.IgnoreNotFound(r.Client.Patch(ctx, tc, ctrl.MergeFrom(base)))
}

func ownedByPool(labels map[string]string, tc *v1alpha1.TestCluster) bool {
	return labels[provision.LabelPool] == tc.Spec.PoolRef && labels[provision.LabelNamespace] == tc.Namespace
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
		(ready.Reason == v1alpha1.ReasonTemplateNotFound && tc.Spec.ClusterName != "")):
		return v1alpha1.TestClusterFailed
	case tc.Spec.ClusterName == "":
		return v1alpha1.TestClusterQueued
	}
	return v1alpha1.TestClusterProvisioning
}
