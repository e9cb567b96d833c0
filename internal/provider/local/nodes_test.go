package local

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestSimulatedNodeName(t *testing.T) {
	for i, want := range map[int]string{1: "sim-1", 12: "sim-12", 1000: "sim-1000"} {
		if got := SimulatedNodeName(i); got != want {
			t.Errorf("SimulatedNodeName(%d) = %q, want %q", i, got, want)
		}
	}
}

// checkSimulatedNode checks the object simulatedNode builds.
func checkSimulatedNode(t *testing.T, n *corev1.Node, name, cluster string) {
	t.Helper()
	if n.Name != name {
		t.Errorf("name = %q, want %q", n.Name, name)
	}
	for k, want := range map[string]string{
		simulatedNodeAnnotation:        "fake",
		"node.alpha.kubernetes.io/ttl": "0",
	} {
		if got := n.Annotations[k]; got != want {
			t.Errorf("%s: annotation %s = %q, want %q", name, k, got, want)
		}
	}
	for k, want := range map[string]string{
		"kubernetes.io/hostname": name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		"type":                   "kwok",
		"ephemera.dev/cluster":   cluster,
		"ephemera.dev/node-kind": "simulated",
	} {
		if got := n.Labels[k]; got != want {
			t.Errorf("%s: label %s = %q, want %q", name, k, got, want)
		}
	}
	for res, want := range map[corev1.ResourceName]string{
		corev1.ResourceCPU:    "32",
		corev1.ResourceMemory: "256Gi",
		corev1.ResourcePods:   "110",
	} {
		q := resource.MustParse(want)
		if got := n.Status.Capacity[res]; got.Cmp(q) != 0 {
			t.Errorf("%s: capacity %s = %s, want %s", name, res, got.String(), want)
		}
		if got := n.Status.Allocatable[res]; got.Cmp(q) != 0 {
			t.Errorf("%s: allocatable %s = %s, want %s", name, res, got.String(), want)
		}
	}
	if info := n.Status.NodeInfo; info.OperatingSystem != "linux" || info.Architecture != "amd64" {
		t.Errorf("%s: node info = %+v", name, info)
	}
}

func TestSimulatedNode(t *testing.T) {
	a, b := simulatedNode("sim-1", "dev"), simulatedNode("sim-2", "dev")
	checkSimulatedNode(t, a, "sim-1", "dev")
	checkSimulatedNode(t, b, "sim-2", "dev")
	// Nodes must not share maps: the client may mutate what it is given.
	a.Labels["x"] = "y"
	a.Status.Capacity[corev1.ResourceCPU] = resource.MustParse("1")
	if _, ok := b.Labels["x"]; ok {
		t.Error("nodes share their labels map")
	}
	if got := b.Status.Capacity[corev1.ResourceCPU]; got.String() != "32" {
		t.Error("nodes share their capacity")
	}
}

// This is a unit test of object construction and idempotency against the
// fake clientset; it says nothing about how a real API server or kwok
// treat the nodes.
func TestRegisterSimulatedNodesFakeClient(t *testing.T) {
	ctx := context.Background()
	names := func(t *testing.T, c *fake.Clientset) []string {
		t.Helper()
		list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range list.Items {
			out = append(out, n.Name)
		}
		slices.Sort(out)
		return out
	}

	tests := []struct {
		name string
		n    int32
		want []string
	}{
		{"none", 0, nil},
		{"one", 1, []string{"sim-1"}},
		{"three", 3, []string{"sim-1", "sim-2", "sim-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset()
			if err := registerSimulatedNodes(ctx, c, "dev", tt.n); err != nil {
				t.Fatalf("registerSimulatedNodes: %v", err)
			}
			if got := names(t, c); !slices.Equal(got, tt.want) {
				t.Fatalf("nodes = %v, want %v", got, tt.want)
			}
			for _, name := range tt.want {
				n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				checkSimulatedNode(t, n, name, "dev")
			}
			// Again: nodes that exist are no error.
			if err := registerSimulatedNodes(ctx, c, "dev", tt.n); err != nil {
				t.Fatalf("second registerSimulatedNodes: %v", err)
			}
			if got := names(t, c); !slices.Equal(got, tt.want) {
				t.Fatalf("nodes after the second call = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("existing nodes are left alone, missing ones added", func(t *testing.T) {
		existing := simulatedNode("sim-2", "dev")
		existing.Labels["kept"] = "yes"
		c := fake.NewClientset(existing)
		if err := registerSimulatedNodes(ctx, c, "dev", 3); err != nil {
			t.Fatalf("registerSimulatedNodes: %v", err)
		}
		if got, want := names(t, c), []string{"sim-1", "sim-2", "sim-3"}; !slices.Equal(got, want) {
			t.Fatalf("nodes = %v, want %v", got, want)
		}
		n, err := c.CoreV1().Nodes().Get(ctx, "sim-2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Labels["kept"] != "yes" {
			t.Error("existing node was replaced")
		}
	})

	t.Run("other errors are returned", func(t *testing.T) {
		c := fake.NewClientset()
		denied := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "sim-1", errors.New("no"))
		c.PrependReactor("create", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, denied
		})
		err := registerSimulatedNodes(ctx, c, "dev", 2)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "create node sim-") {
			t.Fatalf("registerSimulatedNodes = %v, want the Forbidden error naming the node", err)
		}
	})
}
