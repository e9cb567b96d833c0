package lifecycle

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	apiprobe "github.com/ephemera-dev/ephemera/internal/probe"
)

// logTailLines is how much of a failed component's log an error shows.
const logTailLines = 20

// probe asks a cluster's API whether it is usable.
type probe struct {
	client kubernetes.Interface
}

func newProbe(kubeconfig []byte) (*probe, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig: %w", err)
	}
	cfg.Timeout = 5 * time.Second
	cfg.QPS, cfg.Burst = 100, 200
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &probe{client: c}, nil
}

// apiUsable succeeds once the API server accepts a namespace.
func (p *probe) apiUsable(ctx context.Context) error { return apiprobe.APIUsable(ctx, p.client) }

// workloadsReady returns what is still missing before pods can run: nodes
// that are not Ready, the default service account that pods need, or a
// system Deployment (cluster DNS) that is not Available. An empty message
// means ready.
func (p *probe) workloadsReady(ctx context.Context, wantNodes int) (string, error) {
	nodes, err := p.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "the node list: " + err.Error(), nil
	}
	var notReady []string
	for _, n := range nodes.Items {
		if !nodeReady(&n) {
			notReady = append(notReady, n.Name)
		}
	}
	sort.Strings(notReady)
	if ready := len(nodes.Items) - len(notReady); ready < wantNodes {
		msg := fmt.Sprintf("%d of %d nodes Ready", ready, wantNodes)
		if len(notReady) > 0 {
			msg += " (not Ready: " + strings.Join(notReady, ", ") + ")"
		}
		return msg, nil
	}
	if _, err := p.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return "the default service account", nil
		}
		return "the default service account: " + err.Error(), nil
	}
	deps, err := p.client.AppsV1().Deployments(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "the system deployments: " + err.Error(), nil
	}
	for _, d := range deps.Items {
		if !deploymentAvailable(&d) {
			return fmt.Sprintf("%s/%s to be Available", d.Namespace, d.Name), nil
		}
	}
	return "", nil
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue && d.Status.ObservedGeneration >= d.Generation
		}
	}
	return false
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// logTail returns the last n lines of a log file, or "" if unreadable.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
