package testrun

import (
	"context"
	"fmt"
	"io"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/get/testruns"
)

// source is what the command reads from the management plane.
type source interface {
	// TestRun returns the TestRun named key; apierrors.IsNotFound holds
	// for the error of a missing one.
	TestRun(ctx context.Context, key client.ObjectKey) (*v1alpha1.TestRun, error)
	// JobPods returns the pods of the Job named job in namespace, in no
	// particular order.
	JobPods(ctx context.Context, namespace, job string) ([]corev1.Pod, error)
	// Log streams the log of a pod's container, until the container ends
	// when follow is set; apierrors.IsNotFound holds when the pod is gone.
	Log(ctx context.Context, namespace, pod, container string, follow bool) (io.ReadCloser, error)
}

// server is the source of the ephemera server's management plane.
type server struct {
	c  client.Reader
	cs kubernetes.Interface
}

var _ source = (*server)(nil)

// newServer connects to the management plane of e's server.
func newServer(e *env.Env) (*server, error) {
	c, err := e.ServerClient()
	if err != nil {
		return nil, err
	}
	path := e.ServerKubeconfigPath()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("read server kubeconfig %s: %w", path, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("read server kubeconfig %s: %w", path, err)
	}
	return &server{c: c, cs: cs}, nil
}

func (s *server) TestRun(ctx context.Context, key client.ObjectKey) (*v1alpha1.TestRun, error) {
	return testruns.Get(ctx, s.c, key)
}

func (s *server) JobPods(ctx context.Context, namespace, job string) ([]corev1.Pod, error) {
	sel := labels.Set{batchv1.JobNameLabel: job}.String()
	l, err := s.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list the pods of Job %s/%s: %w", namespace, job, err)
	}
	return l.Items, nil
}

func (s *server) Log(ctx context.Context, namespace, pod, container string, follow bool) (io.ReadCloser, error) {
	return s.cs.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: follow}).Stream(ctx)
}
