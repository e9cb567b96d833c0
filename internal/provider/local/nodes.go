package local

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// simulatedNodeAnnotation marks the nodes the simulator (kwok) keeps alive.
const simulatedNodeAnnotation = "kwok.x-k8s.io/node"

// SimulatedNodeName returns the name of the i-th (1-based) simulated node.
func SimulatedNodeName(i int) string { return fmt.Sprintf("sim-%d", i) }

// registerSimulatedNodes creates the Node objects the simulator manages,
// several at a time. It is safe to call again: existing nodes are left
// alone.
func registerSimulatedNodes(ctx context.Context, c kubernetes.Interface, cluster string, n int32) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := 1; i <= int(n); i++ {
		g.Go(func() error {
			node := simulatedNode(SimulatedNodeName(i), cluster)
			if _, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create node %s: %w", node.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func simulatedNode(name, cluster string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				simulatedNodeAnnotation:        "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
			Labels: map[string]string{
				"kubernetes.io/arch":     "amd64",
				"kubernetes.io/os":       "linux",
				"kubernetes.io/hostname": name,
				"type":                   "kwok",
				"ephemera.dev/cluster":   cluster,
				"ephemera.dev/node-kind": "simulated",
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:    "amd64",
				OperatingSystem: "linux",
				KubeletVersion:  "simulated",
			},
		},
	}
}
