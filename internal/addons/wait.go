package addons

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// readiness says whether an object is ready: kstatus says Current, a Job is Complete (kstatus
// counts a started one as Current), an APIService is Available and a LoadBalancer Service has an
// ingress address. When it is not, reason reads like "not
// Available: Deployment does not have minimum availability." (the object's name is the caller's).
func readiness(u *unstructured.Unstructured) (ready bool, reason string) {
	gk := u.GroupVersionKind().GroupKind()
	switch {
	case gk.Group == "apiregistration.k8s.io" && gk.Kind == "APIService":
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Available" {
				if m["status"] == "True" {
					return true, ""
				}
				return false, strings.TrimSuffix(fmt.Sprintf("not Available: %v", m["message"]), ": <nil>")
			}
		}
		return false, "not Available"
	case gk.Group == "" && gk.Kind == "Service":
		if typ, _, _ := unstructured.NestedString(u.Object, "spec", "type"); typ == "LoadBalancer" {
			ingress, _, _ := unstructured.NestedSlice(u.Object, "status", "loadBalancer", "ingress")
			if len(ingress) == 0 {
				return false, "not given a LoadBalancer address"
			}
		}
	}
	res, err := status.Compute(u)
	if err != nil {
		return false, "not ready: " + err.Error()
	}
	if res.Status == status.CurrentStatus && gk.Group == "batch" && gk.Kind == "Job" && !jobComplete(u) {
		// kstatus counts a started Job as Current; a phase waits for it to complete.
		res.Status = status.InProgressStatus
	}
	if res.Status == status.CurrentStatus {
		return true, ""
	}
	r := notWhat(u.GetKind())
	if res.Message != "" {
		r += ": " + res.Message
	}
	return false, r
}

func jobComplete(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == "Complete" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// notWhat says what a kind of object is not while it is not ready.
func notWhat(kind string) string {
	switch kind {
	case "Deployment":
		return "not Available"
	case "StatefulSet", "DaemonSet", "ReplicaSet":
		return "not rolled out"
	case "Job":
		return "not Complete"
	case "CustomResourceDefinition":
		return "not Established"
	case "Pod":
		return "not Ready"
	default:
		return "not ready"
	}
}

// hasPods says whether a kind's readiness depends on pods it selects.
func hasPods(kind string) bool {
	switch kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		return true
	}
	return false
}

// badWaiting are waiting reasons that will not resolve by themselves.
var badWaiting = []string{
	"ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError",
	"CreateContainerError", "InvalidImageName", "RunContainerError", "ErrImageNeverPull",
}

// podReason names the first pod that explains a workload's not being ready, as "pod NAME:
// REASON": a container waiting for a reason that will not resolve (ImagePullBackOff,
// CrashLoopBackOff…), else a container that exited with an error, else an unschedulable pod,
// else any container waiting. It is empty when no pod explains anything.
func podReason(pods []corev1.Pod) string {
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	statuses := func(p corev1.Pod) []corev1.ContainerStatus {
		return append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...)
	}
	for _, p := range pods {
		for _, cs := range statuses(p) {
			if w := cs.State.Waiting; w != nil && slices.Contains(badWaiting, w.Reason) {
				return "pod " + p.Name + ": " + w.Reason
			}
		}
	}
	for _, p := range pods {
		for _, cs := range statuses(p) {
			if t := cs.LastTerminationState.Terminated; t != nil && t.ExitCode != 0 {
				return fmt.Sprintf("pod %s: container %s exited with code %d (%s)", p.Name, cs.Name, t.ExitCode, t.Reason)
			}
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				return fmt.Sprintf("pod %s: container %s exited with code %d (%s)", p.Name, cs.Name, t.ExitCode, t.Reason)
			}
		}
	}
	for _, p := range pods {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason != "" {
				r := "pod " + p.Name + ": " + c.Reason
				if c.Message != "" {
					r += " (" + c.Message + ")"
				}
				return r
			}
		}
	}
	for _, p := range pods {
		for _, cs := range statuses(p) {
			if w := cs.State.Waiting; w != nil && w.Reason != "" {
				return "pod " + p.Name + ": " + w.Reason
			}
		}
	}
	return ""
}

// notReady returns the first of refs that is not ready and why, or "" when all are.
func (c *cluster) notReady(ctx context.Context, refs []objectRef) (item, reason string, err error) {
	for _, ref := range refs {
		ri, ref, err := c.resource(ref)
		if err != nil {
			return ref.String(), "not known to the cluster: " + err.Error(), nil
		}
		u, err := ri.Get(ctx, ref.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return ref.String(), "not found", nil
		}
		if err != nil {
			return "", "", err
		}
		ready, why := readiness(u)
		if ready {
			continue
		}
		if hasPods(ref.gvk.Kind) {
			if pr := c.workloadPodReason(ctx, u); pr != "" {
				why = notWhat(ref.gvk.Kind) + ": " + pr
			}
		}
		return ref.String(), why, nil
	}
	return "", "", nil
}

// workloadPodReason lists the pods a workload selects and explains its not being ready.
func (c *cluster) workloadPodReason(ctx context.Context, u *unstructured.Unstructured) string {
	sel, found, err := unstructured.NestedMap(u.Object, "spec", "selector")
	if err != nil || !found {
		return ""
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(sel, &ls); err != nil {
		return ""
	}
	s, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		return ""
	}
	pods, err := c.kube.CoreV1().Pods(u.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return ""
	}
	return podReason(pods.Items)
}
