// Package testrun reconciles TestRuns: it gets the run a cluster (a
// TestCluster of its own, or one named by the user), runs the tests as a
// Job in the management cluster with the cluster's kubeconfig mounted,
// reads their results, deletes or holds the cluster, and reports commit
// statuses. A matrix run makes one child TestRun per cell and sums them
// up.
package testrun

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/artifact"
	"github.com/ephemera-dev/ephemera/internal/report"
)

// Finalizer keeps a TestRun until its gateway port and artefacts are gone.
const Finalizer = "ephemera.dev/testrun"

// Labels on the objects a TestRun makes.
const (
	// LabelTestRun names the run that made a TestCluster, Job or Secret.
	LabelTestRun = "ephemera.dev/testrun"
	// LabelParent names a matrix cell's parent run.
	LabelParent = "ephemera.dev/testrun-parent"
)

// clusterSlack is how much longer than the run's timeout its TestCluster's
// lease lasts, so the lease never ends under a running test.
const clusterSlack = 15 * time.Minute

// Gateway makes a cluster's API server reachable from runner pods.
type Gateway interface {
	// Expose forwards to target (host:port) and returns the host:port pods
	// dial, until Release(key). It listens on prefer (host:port) when
	// that is free, so a restarted server keeps a running test's address.
	Expose(key, target, prefer string) (string, error)
	Release(key string)
}

// ReporterFunc makes a commit-status reporter; report.New by default.
type ReporterFunc func(t report.Target, token string) (report.Reporter, error)

// Reconciler reconciles TestRuns.
type Reconciler struct {
	// Client reads through the manager's cache and writes to the API.
	Client client.Client
	// Reader reads the API directly, to tell an object just made (not yet
	// in the cache) from one deleted.
	Reader client.Reader
	// Kube reads runner pods' logs.
	Kube kubernetes.Interface
	// Gateway, when set, is how runner pods reach clusters (the embedded
	// management plane, whose pods reach the host end of its node's veth
	// through the node's route and masquerade); nil means they reach the
	// clusters' endpoints directly. Either way runner pods are on the pod
	// network, never the node's: the node's loopback, where the management
	// plane's etcd and controllers listen, is out of their reach.
	Gateway Gateway
	// ArtifactsRoot, when set, is a host dir the management cluster's node
	// shares: each run's artefacts are kept in ArtifactsRoot/NS/NAME and
	// their JUnit read from there. Otherwise artefacts live in the pod and
	// results come from the exit code alone.
	ArtifactsRoot string
	// ExternalURL is where the server's /artifacts/ are served, for
	// commit statuses' target URLs; "" leaves them empty.
	ExternalURL string
	// Links signs those URLs, as commit statuses are often public: they
	// work for LinkTTL after they are posted. Nil leaves them empty.
	Links   *artifact.Signer
	LinkTTL time.Duration
	// Events, when set, records what happens to each run (kubectl
	// describe, ephemera describe testrun).
	Events events.EventRecorder
	// NewReporter makes commit-status reporters.
	NewReporter ReporterFunc
	// Now is the clock.
	Now func() time.Time

	posted   sync.Map // run UID/forge → the report.State last posted
	refused  sync.Map // run UID/forge → refusal{state, message}: not tried again in that state
	finished sync.Map // run UID → true once its Complete status is written
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	run := &v1alpha1.TestRun{}
	if err := r.Client.Get(ctx, req.NamespacedName, run); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !run.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.reconcileDelete(ctx, run)
	}
	if !controllerutil.ContainsFinalizer(run, Finalizer) {
		base := run.DeepCopy()
		controllerutil.AddFinalizer(run, Finalizer)
		if err := r.Client.Patch(ctx, run, client.MergeFrom(base)); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	if _, done := r.finished.Load(run.UID); done && !isComplete(run) {
		// The cache has not caught up with the run's end: act on
		// nothing (no second Job, no second status) until it has.
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	base := run.DeepCopy()
	var res reconcile.Result
	var err error
	if run.Spec.Matrix != nil {
		res, err = r.reconcileMatrix(ctx, run)
	} else {
		res, err = r.reconcileRun(ctx, run)
	}
	if err == nil {
		var rres reconcile.Result
		rres, err = r.reportStatus(ctx, run)
		res = sooner(res, rres)
	}
	run.Status.ObservedGeneration = run.Generation
	run.Status.Phase = PhaseOf(run)
	if !equality.Semantic.DeepEqual(base.Status, run.Status) {
		// Optimistic: a reconcile of a stale copy (the cache lags behind
		// the run's own writes) must not undo a finished run's status.
		perr := r.Client.Status().Patch(ctx, run, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		switch {
		case apierrors.IsConflict(perr):
			return reconcile.Result{RequeueAfter: time.Second}, nil
		case perr != nil && !apierrors.IsNotFound(perr):
			return reconcile.Result{}, perr
		}
	}
	if isComplete(run) {
		r.finished.Store(run.UID, true)
	}
	return res, err
}

func isComplete(run *v1alpha1.TestRun) bool {
	c := meta.FindStatusCondition(run.Status.Conditions, v1alpha1.ConditionComplete)
	return c != nil && c.Status == metav1.ConditionTrue
}

// reconcileRun drives one run (not a matrix) through cluster, Job and
// results.
func (r *Reconciler) reconcileRun(ctx context.Context, run *v1alpha1.TestRun) (reconcile.Result, error) {
	if isComplete(run) {
		return reconcile.Result{}, nil
	}
	tc, res, err := r.ensureTestCluster(ctx, run)
	if tc == nil || err != nil {
		return res, err
	}
	run.Status.TestCluster = tc.Name
	switch tc.Status.Phase {
	case v1alpha1.TestClusterReady:
	case v1alpha1.TestClusterFailed, v1alpha1.TestClusterDeleting:
		msg := fmt.Sprintf("TestCluster %q is %s", tc.Name, tc.Status.Phase)
		if c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionReady); c != nil {
			msg += ": " + c.Message
		}
		setCondition(run, v1alpha1.ConditionClusterReady, metav1.ConditionFalse, v1alpha1.ReasonClusterError, msg)
		return r.finish(ctx, run, tc, v1alpha1.ReasonClusterError, msg)
	default:
		msg := fmt.Sprintf("waiting for TestCluster %q (%s)", tc.Name, cmpOr(string(tc.Status.Phase), "new"))
		if tc.Status.QueuePosition > 0 {
			msg += fmt.Sprintf(", position %d in the queue", tc.Status.QueuePosition)
		}
		setCondition(run, v1alpha1.ConditionClusterReady, metav1.ConditionFalse, v1alpha1.ReasonWaiting, msg)
		setCondition(run, v1alpha1.ConditionComplete, metav1.ConditionFalse, v1alpha1.ReasonWaiting, msg)
		// TestClusters the run owns wake it when they change; one
		// named by the user is looked at again.
		return reconcile.Result{RequeueAfter: 5 * time.Second}, nil
	}
	run.Status.KubernetesVersion = tc.Status.KubernetesVersion
	setCondition(run, v1alpha1.ConditionClusterReady, metav1.ConditionTrue, v1alpha1.ReasonReady,
		fmt.Sprintf("TestCluster %q is ready (cluster %q, Kubernetes %s)", tc.Name, tc.Spec.ClusterName, tc.Status.KubernetesVersion))

	job, problem, err := r.ensureJob(ctx, run, tc)
	if err != nil {
		return reconcile.Result{}, err
	}
	if problem != "" {
		return r.finish(ctx, run, tc, v1alpha1.ReasonRunnerError, problem)
	}
	out, pod := r.observeJob(ctx, run, job)
	if out.reason == "" {
		setCondition(run, v1alpha1.ConditionComplete, metav1.ConditionFalse, v1alpha1.ReasonRunning, out.message)
		return reconcile.Result{RequeueAfter: out.recheck}, nil
	}
	run.Status.ExitCode = out.exitCode
	reason, msg := out.reason, out.message
	if dir := r.artifactsDir(run); dir != "" {
		r.saveLog(ctx, run, pod, dir)
		res, note, err := readResults(dir)
		if err != nil {
			msg += "; " + err.Error()
		}
		run.Status.Results = res
		if reason == v1alpha1.ReasonPassed && res != nil && (res.Failures > 0 || res.Errors > 0) {
			reason = v1alpha1.ReasonTestsFailed
			msg = fmt.Sprintf("the command exited 0 but JUnit reports %d failures and %d errors", res.Failures, res.Errors)
		}
		if note != "" {
			msg += "; " + note
		}
	}
	return r.finish(ctx, run, tc, reason, msg)
}

// ensureTestCluster returns the run's TestCluster, creating it for a pool
// or template source. It returns nil while there is nothing to look at yet.
func (r *Reconciler) ensureTestCluster(ctx context.Context, run *v1alpha1.TestRun) (*v1alpha1.TestCluster, reconcile.Result, error) {
	tc := &v1alpha1.TestCluster{}
	src := run.Spec.Cluster
	if src.TestClusterRef != "" {
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: src.TestClusterRef}, tc)
		if apierrors.IsNotFound(err) && run.Status.Job != "" {
			msg := fmt.Sprintf("TestCluster %q was deleted while the run was under way", src.TestClusterRef)
			return nil, reconcile.Result{}, r.finishNoCluster(ctx, run, msg)
		}
		if apierrors.IsNotFound(err) {
			msg := fmt.Sprintf("TestCluster %q not found in namespace %q: create it, or name another in spec.cluster.testClusterRef", src.TestClusterRef, run.Namespace)
			setCondition(run, v1alpha1.ConditionClusterReady, metav1.ConditionFalse, v1alpha1.ReasonWaiting, msg)
			setCondition(run, v1alpha1.ConditionComplete, metav1.ConditionFalse, v1alpha1.ReasonWaiting, msg)
			return nil, reconcile.Result{RequeueAfter: 5 * time.Second}, nil
		}
		return tc, reconcile.Result{}, err
	}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: run.Name}, tc)
	if err == nil {
		if !metav1.IsControlledBy(tc, run) {
			if owner := metav1.GetControllerOf(tc); !tc.DeletionTimestamp.IsZero() || (owner != nil && owner.Kind == "TestRun" && owner.Name == run.Name) {
				// An earlier run of this name, deleted: its cluster is
				// going (the garbage collector deletes it).
				msg := fmt.Sprintf("waiting for TestCluster %q of an earlier run named %q to go", tc.Name, run.Name)
				setCondition(run, v1alpha1.ConditionClusterReady, metav1.ConditionFalse, v1alpha1.ReasonWaiting, msg)
				setCondition(run, v1alpha1.ConditionComplete, metav1.ConditionFalse, v1alpha1.ReasonWaiting, msg)
				return nil, reconcile.Result{RequeueAfter: 2 * time.Second}, nil
			}
			msg := fmt.Sprintf("a TestCluster named %q exists already and is not this run's: delete it, or rename the run", run.Name)
			return nil, reconcile.Result{}, r.finishNoCluster(ctx, run, msg)
		}
		return tc, reconcile.Result{}, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, reconcile.Result{}, err
	}
	if run.Status.TestCluster != "" {
		// It was made and is gone: deleted by hand, or its lease ended.
		msg := fmt.Sprintf("TestCluster %q is gone (deleted, or its lease ended)", run.Name)
		return nil, reconcile.Result{}, r.finishNoCluster(ctx, run, msg)
	}
	ttl := metav1.Duration{Duration: run.Spec.TimeoutOrDefault() + clusterSlack}
	tc = &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{
			Name: run.Name, Namespace: run.Namespace,
			Labels: map[string]string{LabelTestRun: run.Name},
		},
		Spec: v1alpha1.TestClusterSpec{
			PoolRef: src.PoolRef, TemplateRef: src.TemplateRef, KubernetesVersion: src.KubernetesVersion, TTL: &ttl,
		},
	}
	if err := controllerutil.SetControllerReference(run, tc, r.Client.Scheme()); err != nil {
		return nil, reconcile.Result{}, err
	}
	if err := r.Client.Create(ctx, tc); err != nil && !apierrors.IsAlreadyExists(err) {
		msg := fmt.Sprintf("cannot create TestCluster %q: %v", run.Name, err)
		return nil, reconcile.Result{}, r.finishNoCluster(ctx, run, msg)
	}
	log.FromContext(ctx).Info("Requested a cluster for TestRun", "testrun", klog.KObj(run), "pool", src.PoolRef, "template", src.TemplateRef)
	r.event(run, v1alpha1.ReasonWaiting, "RequestCluster", fmt.Sprintf("requested TestCluster %q", tc.Name))
	run.Status.TestCluster = tc.Name
	setCondition(run, v1alpha1.ConditionClusterReady, metav1.ConditionFalse, v1alpha1.ReasonWaiting, fmt.Sprintf("waiting for TestCluster %q", tc.Name))
	setCondition(run, v1alpha1.ConditionComplete, metav1.ConditionFalse, v1alpha1.ReasonWaiting, fmt.Sprintf("waiting for TestCluster %q", tc.Name))
	return nil, reconcile.Result{}, nil
}

func (r *Reconciler) finishNoCluster(ctx context.Context, run *v1alpha1.TestRun, msg string) error {
	setCondition(run, v1alpha1.ConditionClusterReady, metav1.ConditionFalse, v1alpha1.ReasonClusterError, msg)
	_, err := r.finish(ctx, run, nil, v1alpha1.ReasonClusterError, msg)
	return err
}

// finish records how the run ended and deletes or holds its cluster.
func (r *Reconciler) finish(ctx context.Context, run *v1alpha1.TestRun, tc *v1alpha1.TestCluster, reason, msg string) (reconcile.Result, error) {
	now := r.Now()
	if r.Gateway != nil {
		r.Gateway.Release(string(run.UID))
	}
	// The runner's copy of the kubeconfig goes with the run's end.
	secret := &corev1.Secret{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: runnerSecretName(run)}, secret); err == nil && metav1.IsControlledBy(secret, run) {
		if err := r.Client.Delete(ctx, secret, client.Preconditions{UID: &secret.UID}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return reconcile.Result{}, err
		}
	}
	if reason == v1alpha1.ReasonRunnerError || reason == v1alpha1.ReasonClusterError {
		// The pod cannot start, or its cluster is gone: stop it.
		job := &batchv1.Job{}
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: run.Name}, job); err == nil && metav1.IsControlledBy(job, run) {
			if _, done := jobFinished(job); !done {
				propagation := metav1.DeletePropagationBackground
				if err := r.Client.Delete(ctx, job, &client.DeleteOptions{PropagationPolicy: &propagation}); err != nil && !apierrors.IsNotFound(err) {
					return reconcile.Result{}, err
				}
			}
		}
	}
	if tc != nil && metav1.IsControlledBy(tc, run) && tc.DeletionTimestamp.IsZero() {
		// Only a cluster that was ready is worth keeping.
		keep := reason != v1alpha1.ReasonPassed && reason != v1alpha1.ReasonClusterError && run.Spec.OnFailure == v1alpha1.FailureHold
		if keep {
			hold := run.Spec.HoldForOrDefault()
			until := metav1.NewTime(now.Add(hold))
			base := tc.DeepCopy()
			tc.Spec.HoldUntil = &until
			tc.Spec.TTL = &metav1.Duration{Duration: hold}
			metav1.SetMetaDataAnnotation(&tc.ObjectMeta, v1alpha1.HeartbeatAnnotation, v1alpha1.HeartbeatValue(now))
			if err := r.Client.Patch(ctx, tc, client.MergeFrom(base)); err != nil {
				return reconcile.Result{}, fmt.Errorf("hold TestCluster %q: %w", tc.Name, err)
			}
			run.Status.HeldUntil = &until
			msg += fmt.Sprintf("; cluster held until %s (TestCluster %q)", until.UTC().Format(time.RFC3339), tc.Name)
		} else if err := r.Client.Delete(ctx, tc); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("delete TestCluster %q: %w", tc.Name, err)
		}
	}
	if run.Status.CompletionTime == nil {
		run.Status.CompletionTime = &metav1.Time{Time: now}
	}
	setCondition(run, v1alpha1.ConditionComplete, metav1.ConditionTrue, reason, msg)
	log.FromContext(ctx).Info("TestRun finished", "testrun", klog.KObj(run), "reason", reason, "message", msg)
	r.event(run, reason, "Finish", msg)
	return reconcile.Result{}, nil
}

func (r *Reconciler) reconcileDelete(ctx context.Context, run *v1alpha1.TestRun) error {
	if !controllerutil.ContainsFinalizer(run, Finalizer) {
		return nil
	}
	if r.Gateway != nil {
		r.Gateway.Release(string(run.UID))
	}
	if dir := r.artifactsDir(run); dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	for _, f := range forges(run) {
		r.posted.Delete(string(run.UID) + "/" + f.provider)
		r.refused.Delete(string(run.UID) + "/" + f.provider)
	}
	r.finished.Delete(run.UID)
	base := run.DeepCopy()
	controllerutil.RemoveFinalizer(run, Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, run, client.MergeFrom(base)))
}

// event records an event on the run, Normal for a pass or a start and
// Warning otherwise.
func (r *Reconciler) event(run *v1alpha1.TestRun, reason, action, note string) {
	if r.Events == nil {
		return
	}
	typ := corev1.EventTypeWarning
	if reason == v1alpha1.ReasonPassed || reason == v1alpha1.ReasonRunning || reason == v1alpha1.ReasonWaiting {
		typ = corev1.EventTypeNormal
	}
	if len(note) > 1000 {
		note = note[:997] + "..."
	}
	r.Events.Eventf(run, nil, typ, reason, action, "%s", note)
}

// artifactsDir is where the run's artefacts are kept on the host, or "".
func (r *Reconciler) artifactsDir(run *v1alpha1.TestRun) string {
	if r.ArtifactsRoot == "" {
		return ""
	}
	return filepath.Join(r.ArtifactsRoot, run.Namespace, run.Name)
}

// PhaseOf derives a run's phase from its conditions.
func PhaseOf(run *v1alpha1.TestRun) v1alpha1.TestRunPhase {
	complete := meta.FindStatusCondition(run.Status.Conditions, v1alpha1.ConditionComplete)
	if complete != nil && complete.Status == metav1.ConditionTrue {
		switch complete.Reason {
		case v1alpha1.ReasonPassed:
			return v1alpha1.TestRunSucceeded
		case v1alpha1.ReasonTestsFailed, v1alpha1.ReasonTimedOut:
			return v1alpha1.TestRunFailed
		}
		return v1alpha1.TestRunError
	}
	if complete != nil && complete.Reason == v1alpha1.ReasonRunning {
		return v1alpha1.TestRunRunning
	}
	return v1alpha1.TestRunPending
}

func setCondition(run *v1alpha1.TestRun, typ string, status metav1.ConditionStatus, reason, msg string) {
	if len(msg) > 2048 {
		msg = msg[:2045] + "..."
	}
	meta.SetStatusCondition(&run.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: run.Generation,
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// sooner combines two results: the earlier requeue wins.
func sooner(a, b reconcile.Result) reconcile.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0:
		return a
	case b.RequeueAfter < a.RequeueAfter:
		return b
	}
	return a
}

// jobFinished reports whether a Job has ended, and how.
func jobFinished(job *batchv1.Job) (*batchv1.JobCondition, bool) {
	for i := range job.Status.Conditions {
		c := &job.Status.Conditions[i]
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
			return c, true
		}
	}
	return nil, false
}
