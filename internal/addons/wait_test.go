package addons

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestReadiness(t *testing.T) {
	tests := []struct {
		name   string
		obj    string
		ready  bool
		reason string
	}{
		{"deployment available", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: n, generation: 1}
spec: {replicas: 1}
status: {observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 1, availableReplicas: 1,
  conditions: [{type: Available, status: "True"}]}`, true, ""},
		{"deployment not available", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: n, generation: 1}
spec: {replicas: 1}
status: {observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 0, availableReplicas: 0}`,
			false, "not Available: Available: 0/1"},
		{"deployment not observed", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: n, generation: 2}
spec: {replicas: 1}
status: {observedGeneration: 1}`, false, "not Available: Deployment generation is 2, but latest observed generation is 1"},
		{"crd established", `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.dev}
status: {conditions: [{type: Established, status: "True"}, {type: NamesAccepted, status: "True"}]}`, true, ""},
		{"crd not established", `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.dev}
status: {conditions: [{type: Established, status: "False", reason: Installing, message: installing}, {type: NamesAccepted, status: "True"}]}`,
			false, "not Established: Install in progress"},
		{"job running", `
apiVersion: batch/v1
kind: Job
metadata: {name: j, namespace: n}
spec: {completions: 1, parallelism: 1}
status: {active: 1, startTime: "2026-01-01T00:00:00Z"}`, false, "not Complete: Job in progress. success:0, active: 1, failed: 0"},
		{"job failed", `
apiVersion: batch/v1
kind: Job
metadata: {name: j, namespace: n}
spec: {completions: 1}
status: {failed: 1, conditions: [{type: Failed, status: "True"}]}`, false, "not Complete: Job Failed. failed: 1/1"},
		{"job complete", `
apiVersion: batch/v1
kind: Job
metadata: {name: j, namespace: n}
spec: {completions: 1}
status: {succeeded: 1, conditions: [{type: Complete, status: "True"}]}`, true, ""},
		{"load balancer without address", `
apiVersion: v1
kind: Service
metadata: {name: s, namespace: n}
spec: {type: LoadBalancer, clusterIP: 10.0.0.10}`, false, "not given a LoadBalancer address"},
		{"load balancer with address", `
apiVersion: v1
kind: Service
metadata: {name: s, namespace: n}
spec: {type: LoadBalancer, clusterIP: 10.0.0.10}
status: {loadBalancer: {ingress: [{ip: 10.1.0.1}]}}`, true, ""},
		{"cluster IP service", `
apiVersion: v1
kind: Service
metadata: {name: s, namespace: n}
spec: {type: ClusterIP, clusterIP: 10.0.0.10}`, true, ""},
		{"apiservice available", `
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
status: {conditions: [{type: Available, status: "True"}]}`, true, ""},
		{"apiservice unavailable", `
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
status: {conditions: [{type: Available, status: "False", message: "service/metrics-server has no endpoints"}]}`,
			false, "not Available: service/metrics-server has no endpoints"},
		{"apiservice without status", `
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}`, false, "not Available"},
		{"configmap", `
apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: n}`, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, reason := readiness(obj(t, tt.obj))
			if ready != tt.ready || reason != tt.reason {
				t.Errorf("readiness = %v, %q; want %v, %q", ready, reason, tt.ready, tt.reason)
			}
		})
	}
}

func TestPodReason(t *testing.T) {
	waiting := func(name, reason string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}}}
	}
	crashed := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-crash"}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
		{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}}}}}
	unschedulable := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-pending"}, Status: corev1.PodStatus{Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/2 nodes are available"}}}}
	initWaiting := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-init"}, Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{
		{Name: "init", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}}}
	tests := []struct {
		name string
		pods []corev1.Pod
		want string
	}{
		{"none", nil, ""},
		{"running", []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "p"}}}, ""},
		{"image pull back-off beats creating", []corev1.Pod{waiting("a", "ContainerCreating"), waiting("b", "ImagePullBackOff")}, "pod b: ImagePullBackOff"},
		{"crash loop", []corev1.Pod{waiting("a", "CrashLoopBackOff")}, "pod a: CrashLoopBackOff"},
		{"init container", []corev1.Pod{initWaiting}, "pod p-init: ErrImagePull"},
		{"exited", []corev1.Pod{crashed}, "pod p-crash: container app exited with code 2 (Error)"},
		{"unschedulable beats creating", []corev1.Pod{waiting("a", "ContainerCreating"), unschedulable}, "pod p-pending: Unschedulable (0/2 nodes are available)"},
		{"creating", []corev1.Pod{waiting("a", "ContainerCreating")}, "pod a: ContainerCreating"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := podReason(tt.pods); got != tt.want {
				t.Errorf("podReason = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPhaseErrorMessage(t *testing.T) {
	tests := []struct {
		err  PhaseError
		want string
	}{
		{PhaseError{Phase: "operators", Item: "Deployment cert-manager/cert-manager", Reason: "not Available: pod cert-manager-x: ImagePullBackOff"},
			"phase operators: Deployment cert-manager/cert-manager not Available: pod cert-manager-x: ImagePullBackOff"},
		{PhaseError{Phase: "apps", Item: "chart web", Reason: "open ./web: no such file or directory"},
			"phase apps: chart web: open ./web: no such file or directory"},
		{PhaseError{Phase: "apps", Reason: "is named twice"}, "phase apps is named twice"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
