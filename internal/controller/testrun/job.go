package testrun

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/runner"
)

// Where the runner container finds the kubeconfig.
const (
	kubeconfigDir  = "/etc/ephemera"
	kubeconfigKey  = "kubeconfig"
	containerName  = "test"
	logFile        = "test.log"
	maxFailedNames = 20
)

// podStartErrors are container waiting reasons that never resolve on
// their own: the run ends with RunnerError.
var podStartErrors = map[string]string{
	"ErrImageNeverPull":          "image %q is not on the management cluster's node and its pull policy is Never: load it with `ephemera load image ARCHIVE --server`",
	"ErrImagePull":               "image %q cannot be pulled; load it with `ephemera load image ARCHIVE --server` and use a tag other than latest",
	"ImagePullBackOff":           "image %q cannot be pulled; load it with `ephemera load image ARCHIVE --server` and use a tag other than latest",
	"InvalidImageName":           "image %q is not a valid image name",
	"CreateContainerConfigError": "the runner container for image %q cannot be configured",
	"CreateContainerError":       "the runner container for image %q cannot be created",
	"RunContainerError":          "the runner container for image %q cannot start (is the command in the image?)",
	"StartError":                 "the runner container for image %q cannot start (is the command in the image?)",
}

// EnvTestRun names the TestRun in the runner's environment.
const EnvTestRun = "EPHEMERA_TESTRUN"

func runnerSecretName(run *v1alpha1.TestRun) string { return run.Name + "-runner" }

// ensureJob creates the runner Secret and Job once, and returns the Job.
// A problem that retrying cannot mend (a name taken, a Job the API
// refuses, the Job deleted under the run) comes back as problem, for the
// run to end with.
func (r *Reconciler) ensureJob(ctx context.Context, run *v1alpha1.TestRun, tc *v1alpha1.TestCluster) (job *batchv1.Job, problem string, err error) {
	job = &batchv1.Job{}
	key := types.NamespacedName{Namespace: run.Namespace, Name: run.Name}
	err = r.Client.Get(ctx, key, job)
	if apierrors.IsNotFound(err) && run.Status.Job != "" && r.Reader != nil {
		// The cache may not have the Job just made: ask the API.
		err = r.Reader.Get(ctx, key, job)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("the runner Job %q was deleted while the run was under way", run.Status.Job), nil
		}
	}
	if err == nil {
		if !metav1.IsControlledBy(job, run) {
			return nil, fmt.Sprintf("a Job named %q exists already and is not this run's: delete it, or rename the run", run.Name), nil
		}
		if r.Gateway != nil && run.Status.CompletionTime == nil {
			// After a restart of the server, open the gateway again, on
			// the address the runner's kubeconfig names.
			if _, err := r.runnerKubeconfig(ctx, run, tc, r.exposedAt(ctx, run)); err != nil {
				return nil, "", err
			}
		}
		return job, "", nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, "", err
	}
	kubeconfig, err := r.runnerKubeconfig(ctx, run, tc, "")
	if err != nil {
		return nil, "", err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: runnerSecretName(run), Namespace: run.Namespace, Labels: map[string]string{LabelTestRun: run.Name}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{kubeconfigKey: kubeconfig.data},
	}
	if err := controllerutil.SetControllerReference(run, secret, r.Client.Scheme()); err != nil {
		return nil, "", err
	}
	if err := r.Client.Create(ctx, secret); apierrors.IsAlreadyExists(err) {
		old := &corev1.Secret{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(secret), old); err != nil {
			return nil, "", err
		}
		if !metav1.IsControlledBy(old, run) {
			return nil, fmt.Sprintf("a Secret named %q exists already and is not this run's: delete it, or rename the run", secret.Name), nil
		}
		secret.ResourceVersion = old.ResourceVersion
		if err := r.Client.Update(ctx, secret); err != nil {
			return nil, "", err
		}
	} else if err != nil {
		return nil, "", fmt.Errorf("create the runner's kubeconfig Secret: %w", err)
	}
	if dir := r.artifactsDir(run); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, "", fmt.Errorf("make the run's artefacts dir: %w", err)
		}
		// The runner may run as any user; the dir is bind-mounted alone,
		// so its private parents stay closed.
		if err := os.Chmod(dir, 0o777); err != nil {
			return nil, "", err
		}
		run.Status.Artifacts = dir
	}
	job = r.buildJob(run, tc, kubeconfig.endpoint)
	if err := controllerutil.SetControllerReference(run, job, r.Client.Scheme()); err != nil {
		return nil, "", err
	}
	err = r.Client.Create(ctx, job)
	switch {
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
		return nil, fmt.Sprintf("the runner Job was refused: %v", err), nil
	case apierrors.IsAlreadyExists(err) && r.Reader != nil:
		// Only the run's own Jobs are in the cache: ask the API whose
		// this one is.
		other := &batchv1.Job{}
		if err := r.Reader.Get(ctx, key, other); err == nil && !metav1.IsControlledBy(other, run) {
			return nil, fmt.Sprintf("a Job named %q exists already and is not this run's: delete it, or rename the run", run.Name), nil
		}
	case err != nil && !apierrors.IsAlreadyExists(err):
		return nil, "", fmt.Errorf("create the runner Job: %w", err)
	}
	now := metav1.NewTime(r.Now())
	run.Status.Job, run.Status.StartTime = job.Name, &now
	log.FromContext(ctx).Info("Started TestRun", "testrun", klog.KObj(run), "job", job.Name, "cluster", tc.Spec.ClusterName, "image", run.Spec.Runner.Image)
	r.event(run, v1alpha1.ReasonRunning, "Start", fmt.Sprintf("Job %q runs %s against TestCluster %q (Kubernetes %s)", job.Name, run.Spec.Runner.Image, tc.Name, tc.Status.KubernetesVersion))
	return job, "", nil
}

type runnerConfig struct {
	data     []byte
	endpoint string
}

// runnerKubeconfig is the TestCluster's kubeconfig as the runner pod uses
// it: through the gateway, when there is one, with the cluster's own name
// checked against its certificate.
func (r *Reconciler) runnerKubeconfig(ctx context.Context, run *v1alpha1.TestRun, tc *v1alpha1.TestCluster, prefer string) (runnerConfig, error) {
	src := &corev1.Secret{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: tc.Status.KubeconfigSecret}, src); err != nil {
		return runnerConfig{}, fmt.Errorf("read TestCluster %q's kubeconfig: %w", tc.Name, err)
	}
	cfg, err := clientcmd.Load(src.Data[kubeconfigKey])
	if err != nil {
		return runnerConfig{}, fmt.Errorf("read TestCluster %q's kubeconfig: %w", tc.Name, err)
	}
	endpoint := tc.Status.Endpoint
	for _, c := range cfg.Clusters {
		endpoint = c.Server
		if r.Gateway == nil {
			continue
		}
		u, err := url.Parse(c.Server)
		if err != nil {
			return runnerConfig{}, fmt.Errorf("TestCluster %q's kubeconfig: bad server %q: %w", tc.Name, c.Server, err)
		}
		addr, err := r.Gateway.Expose(string(run.UID), hostPort(u), prefer)
		if err != nil {
			return runnerConfig{}, err
		}
		if c.TLSServerName == "" {
			c.TLSServerName = u.Hostname()
		}
		c.Server = "https://" + addr
		endpoint = c.Server
	}
	data, err := clientcmd.Write(*cfg)
	return runnerConfig{data: data, endpoint: endpoint}, err
}

// exposedAt is the gateway address in the runner's kubeconfig Secret, or "".
func (r *Reconciler) exposedAt(ctx context.Context, run *v1alpha1.TestRun) string {
	secret := &corev1.Secret{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: runnerSecretName(run)}, secret); err != nil {
		return ""
	}
	cfg, err := clientcmd.Load(secret.Data[kubeconfigKey])
	if err != nil {
		return ""
	}
	for _, c := range cfg.Clusters {
		if u, err := url.Parse(c.Server); err == nil {
			return u.Host
		}
	}
	return ""
}

// buildJob is the runner: one pod, never retried, bounded by the timeout.
func (r *Reconciler) buildJob(run *v1alpha1.TestRun, tc *v1alpha1.TestCluster, endpoint string) *batchv1.Job {
	artifacts := run.Spec.ArtifactsDirOrDefault()
	ingressAddress, ingressDomain := runner.IngressOf(tc.Status.Ingress)
	env := append([]corev1.EnvVar{}, run.Spec.Runner.Env...)
	for _, e := range []corev1.EnvVar{
		{Name: runner.EnvKubeconfig, Value: kubeconfigDir + "/" + kubeconfigKey},
		{Name: runner.EnvClusterName, Value: tc.Name},
		{Name: runner.EnvEndpoint, Value: endpoint},
		{Name: runner.EnvKubernetesVersion, Value: tc.Status.KubernetesVersion},
		{Name: runner.EnvArtifacts, Value: artifacts},
		{Name: runner.EnvIngressAddress, Value: ingressAddress},
		{Name: runner.EnvIngressDomain, Value: ingressDomain},
		{Name: EnvTestRun, Value: run.Name},
	} {
		// Later entries win in Kubernetes; drop the user's copy anyway
		// so the pod spec is plain to read.
		env = dropEnv(env, e.Name)
		env = append(env, e)
	}
	artifactsVolume := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	if dir := r.artifactsDir(run); dir != "" {
		artifactsVolume = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}
	}
	labels := map[string]string{LabelTestRun: run.Name}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: run.Name, Namespace: run.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To[int32](0),
			ActiveDeadlineSeconds: ptr.To(int64(run.Spec.TimeoutOrDefault().Seconds())),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				// On the pod network, never the node's (hostNetwork): the
				// node's loopback has the management plane's etcd and
				// controllers on it.
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  ptr.To(false),
					EnableServiceLinks:            ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					Containers: []corev1.Container{{
						Name:                     containerName,
						Image:                    run.Spec.Runner.Image,
						ImagePullPolicy:          run.Spec.Runner.ImagePullPolicy,
						Command:                  run.Spec.Runner.Command,
						Args:                     run.Spec.Runner.Args,
						Env:                      env,
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						VolumeMounts: []corev1.VolumeMount{
							{Name: "kubeconfig", MountPath: kubeconfigDir, ReadOnly: true},
							{Name: "artifacts", MountPath: artifacts},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "kubeconfig", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: runnerSecretName(run)}}},
						{Name: "artifacts", VolumeSource: artifactsVolume},
					},
				},
			},
		},
	}
}

func dropEnv(env []corev1.EnvVar, name string) []corev1.EnvVar {
	out := env[:0]
	for _, e := range env {
		if e.Name != name {
			out = append(out, e)
		}
	}
	return out
}

// jobOutcome is what the Job and its pod say; reason is "" while it runs.
type jobOutcome struct {
	reason, message string
	exitCode        *int32
	recheck         time.Duration
}

// observeJob reads the Job's state and its pod's; it returns the pod too
// (nil when there is none).
func (r *Reconciler) observeJob(ctx context.Context, run *v1alpha1.TestRun, job *batchv1.Job) (jobOutcome, *corev1.Pod) {
	pod := r.runnerPod(ctx, job)
	return outcome(run, job, pod), pod
}

// outcome says where the Job and its pod are.
func outcome(run *v1alpha1.TestRun, job *batchv1.Job, pod *corev1.Pod) jobOutcome {
	var exit *int32
	started := false
	if pod != nil {
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name != containerName {
				continue
			}
			if t := cs.State.Terminated; t != nil {
				exit = ptr.To(t.ExitCode)
				started = !t.StartedAt.IsZero()
			}
			started = started || cs.State.Running != nil
		}
	}
	if c, done := jobFinished(job); done {
		// The Job controller deletes the pod at the deadline: without
		// it, nothing says the container never ran.
		known := pod == nil || started
		if !known {
			c = c.DeepCopy()
			c.Message = podPendingMessage(pod)
		}
		return jobOutcomeOf(run, c, exit, known)
	}
	if pod == nil {
		return jobOutcome{message: fmt.Sprintf("waiting for Job %q to start its pod", job.Name), recheck: 5 * time.Second}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			if format, ok := podStartErrors[w.Reason]; ok {
				msg := fmt.Sprintf(format, run.Spec.Runner.Image)
				if w.Message != "" {
					msg += ": " + w.Message
				}
				return jobOutcome{reason: v1alpha1.ReasonRunnerError, message: msg}
			}
			return jobOutcome{message: fmt.Sprintf("runner pod %q: container waiting (%s)", pod.Name, w.Reason), recheck: 5 * time.Second}
		}
	}
	if pod.Status.Phase == corev1.PodPending {
		return jobOutcome{message: podPendingMessage(pod), recheck: 5 * time.Second}
	}
	return jobOutcome{message: fmt.Sprintf("the tests run in pod %q", pod.Name), recheck: time.Minute}
}

// podPendingMessage says what a pod that has not started waits for.
func podPendingMessage(pod *corev1.Pod) string {
	msg := fmt.Sprintf("runner pod %q is %s", pod.Name, pod.Status.Phase)
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			msg += ": " + c.Message + " (in embedded mode the management plane needs its node: serve --runner-node)"
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			msg += fmt.Sprintf(": container waiting (%s %s)", w.Reason, w.Message)
		}
	}
	return msg
}

// jobOutcomeOf says how a finished Job ended.
// started is false only when the pod shows its container never ran.
func jobOutcomeOf(run *v1alpha1.TestRun, c *batchv1.JobCondition, exit *int32, started bool) jobOutcome {
	switch {
	case c.Type == batchv1.JobComplete:
		return jobOutcome{reason: v1alpha1.ReasonPassed, message: "the tests passed", exitCode: exit}
	case c.Reason == batchv1.JobReasonDeadlineExceeded && exit == nil && !started:
		return jobOutcome{reason: v1alpha1.ReasonRunnerError, message: fmt.Sprintf("the runner never started within the timeout (%s): %s", run.Spec.TimeoutOrDefault(), c.Message)}
	case c.Reason == batchv1.JobReasonDeadlineExceeded:
		return jobOutcome{reason: v1alpha1.ReasonTimedOut, message: fmt.Sprintf("the tests ran past the timeout (%s) and were stopped", run.Spec.TimeoutOrDefault()), exitCode: exit}
	case exit != nil:
		return jobOutcome{reason: v1alpha1.ReasonTestsFailed, message: fmt.Sprintf("the test command exited %d", *exit), exitCode: exit}
	}
	return jobOutcome{reason: v1alpha1.ReasonRunnerError, message: fmt.Sprintf("the runner Job failed: %s: %s", c.Reason, c.Message)}
}

// runnerPod returns the Job's newest pod, or nil.
func (r *Reconciler) runnerPod(ctx context.Context, job *batchv1.Job) *corev1.Pod {
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		return nil
	}
	var newest *corev1.Pod
	for i := range pods.Items {
		if p := &pods.Items[i]; newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp) {
			newest = p
		}
	}
	return newest
}

// saveLog copies the runner pod's log into the artefacts, so it outlives
// the pod. Failing to is logged, not fatal: the pod keeps it too.
func (r *Reconciler) saveLog(ctx context.Context, run *v1alpha1.TestRun, pod *corev1.Pod, dir string) {
	if pod == nil || r.Kube == nil {
		return
	}
	err := func() error {
		stream, err := r.Kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: containerName}).Stream(ctx)
		if err != nil {
			return err
		}
		defer stream.Close()
		// The dir is the runner's too: write a new file and rename it over
		// test.log, so a link the runner left there is replaced, not
		// followed.
		f, err := os.CreateTemp(dir, ".test.log-*")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		if _, err := io.Copy(f, stream); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Chmod(f.Name(), 0o644); err != nil {
			return err
		}
		return os.Rename(f.Name(), filepath.Join(dir, logFile))
	}()
	if err != nil {
		log.FromContext(ctx).Info("Could not keep the runner's log", "testrun", klog.KObj(run), "error", err.Error())
	}
}

// readResults sums up the JUnit in dir; nil when there is none. note
// names the reports skipped for their size.
func readResults(dir string) (results *v1alpha1.TestResults, note string, err error) {
	res, err := runner.ReadJUnitDir(dir)
	note = runner.TooLargeNote(res.TooLarge)
	if err != nil || len(res.Files) == 0 {
		return nil, note, err
	}
	return toResults(res), note, nil
}

func toResults(res runner.Result) *v1alpha1.TestResults {
	out := &v1alpha1.TestResults{
		Tests: int32(res.Tests), Failures: int32(res.Failures), Errors: int32(res.Errors), Skipped: int32(res.Skipped),
	}
	out.Failed = res.Failing[:min(len(res.Failing), maxFailedNames)]
	return out
}

// hostPort is host:port of a URL's host, with the scheme's default port.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "http" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return net.JoinHostPort(u.Hostname(), "443")
}
