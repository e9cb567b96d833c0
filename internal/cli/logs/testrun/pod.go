package testrun

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// pod is the container whose log is a run's.
type pod struct {
	namespace, name, container string
}

// observe looks at a run's Job and returns its pod once the test container
// started, or says what it waits for, or why there is no log to wait for.
func (l *logger) observe(ctx context.Context, tr *v1alpha1.TestRun) (*pod, string, error) {
	if tr.Status.Job == "" {
		if finished(tr) {
			return nil, "", fmt.Errorf("TestRun %s is %s and never ran a Job, so it has no log%s", id(tr), tr.Status.Phase, reason(tr))
		}
		return nil, pending(tr), nil
	}
	pods, err := l.src.JobPods(ctx, tr.Namespace, tr.Status.Job)
	if err != nil {
		return nil, "", err
	}
	p := newest(pods)
	switch {
	case p == nil && finished(tr):
		return nil, "", goneError(tr)
	case p == nil && (tr.Status.Phase == v1alpha1.TestRunPending || tr.Status.Phase == ""):
		return nil, pending(tr), nil
	case p == nil:
		return nil, fmt.Sprintf("TestRun %s: Job %s has no pod yet", id(tr), tr.Status.Job), nil
	case len(p.Spec.Containers) == 0:
		return nil, "", fmt.Errorf("pod %s/%s of TestRun %s has no container", p.Namespace, p.Name, id(tr))
	}
	// The runner Job's pod has one container, the tests.
	c := p.Spec.Containers[0].Name
	out := &pod{namespace: p.Namespace, name: p.Name, container: c}
	st := containerStatus(p, c)
	if st != nil && (st.State.Running != nil || st.State.Terminated != nil) ||
		p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return out, "", nil
	}
	why := "is not created yet"
	if st != nil && st.State.Waiting != nil {
		why = waitingReason(st.State.Waiting)
	}
	if finished(tr) {
		return nil, "", fmt.Errorf("TestRun %s is %s, and the test container of its pod %s never started (it %s), so it wrote no log%s", id(tr), tr.Status.Phase, p.Name, why, reason(tr))
	}
	return nil, fmt.Sprintf("TestRun %s: container %s of pod %s %s", id(tr), c, p.Name, why), nil
}

// waitingReason says why a container waits, with a hint for images that
// cannot be pulled.
func waitingReason(w *corev1.ContainerStateWaiting) string {
	s := "is waiting"
	if w.Reason != "" {
		s += ": " + w.Reason
	}
	if w.Message != "" {
		s += ": " + w.Message
	}
	switch w.Reason {
	case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName":
		s += " (an image without a registry must be loaded: ephemera load image ARCHIVE --server)"
	}
	return s
}

// pending says that a run waits for its cluster, and what the cluster
// waits for when the server said.
func pending(tr *v1alpha1.TestRun) string {
	s := fmt.Sprintf("TestRun %s is Pending, waiting for its cluster", id(tr))
	if c := meta.FindStatusCondition(tr.Status.Conditions, v1alpha1.ConditionClusterReady); c != nil && c.Status != metav1.ConditionTrue && c.Message != "" {
		s += " (" + c.Message + ")"
	}
	return s
}

// goneError says that a finished run's pod, and with it the log, is gone.
func goneError(tr *v1alpha1.TestRun) error {
	s := fmt.Sprintf("the pod of TestRun %s (Job %s) is gone, and its log with it", id(tr), tr.Status.Job)
	if tr.Status.Artifacts != "" {
		s += "; the server's host keeps a copy in " + path.Join(tr.Status.Artifacts, "test.log")
	}
	return errors.New(s)
}

// newest returns the pod created last (a Job that retried has several), or
// nil.
func newest(pods []corev1.Pod) *corev1.Pod {
	var out *corev1.Pod
	for i := range pods {
		p := &pods[i]
		if out == nil || out.CreationTimestamp.Before(&p.CreationTimestamp) ||
			out.CreationTimestamp.Equal(&p.CreationTimestamp) && p.Name > out.Name {
			out = p
		}
	}
	return out
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// finished reports whether a run ended: it starts nothing any more.
func finished(tr *v1alpha1.TestRun) bool {
	switch tr.Status.Phase {
	case v1alpha1.TestRunSucceeded, v1alpha1.TestRunFailed, v1alpha1.TestRunError:
		return true
	}
	return false
}

// reason is ": " and the message of a run's Complete condition, if any.
func reason(tr *v1alpha1.TestRun) string {
	if c := meta.FindStatusCondition(tr.Status.Conditions, v1alpha1.ConditionComplete); c != nil && c.Message != "" {
		return ": " + c.Message
	}
	return ""
}

func id(tr *v1alpha1.TestRun) string { return tr.Namespace + "/" + tr.Name }

func quoteJoin(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
