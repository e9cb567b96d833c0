package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// errNoNodes is returned by drivers whose clusters have no nodes or
// controllers (envtest: etcd and kube-apiserver only).
var errNoNodes = errors.New("no nodes or controllers")

// driver creates and deletes clusters with one tool, the way a user of that
// tool would. Calls never overlap.
type driver interface {
	// Name is the tool's name in tables.
	Name() string
	// Create creates a cluster called name and returns when the tool says
	// it is created. With nodes > 0 the cluster gets that many simulated
	// nodes, made the tool's own way; with 0, the tool takes its fastest
	// path to an API. On error it still returns the cluster when anything
	// may have been started, so that it can be deleted.
	Create(ctx context.Context, name string, nodes int) (*cluster, error)
	// Delete deletes a cluster and returns when the tool says it is gone.
	Delete(ctx context.Context, c *cluster) error
	// Commands tells, for the docs, how each step is driven.
	Commands() commands
}

// commands are the exact invocations a driver makes, for the docs.
type commands struct {
	create, createNodes, delete string
}

// cluster is one cluster made by a driver.
type cluster struct {
	name string
	// dir is named on the command line of every process of the cluster;
	// processesUnder(dir) finds them all.
	dir string
	// config is admin access to the cluster's API server.
	config *rest.Config
	// stop stops an in-process cluster (envtest).
	stop func() error
}

// waitAPIUsable lists namespaces with the cluster's credentials until that
// succeeds: the same "API usable" check for every tool.
func waitAPIUsable(ctx context.Context, c *cluster, timeout time.Duration) error {
	if c.config == nil {
		return fmt.Errorf("cluster %s has no credentials", c.name)
	}
	cfg := rest.CopyConfig(c.config)
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		_, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("API of %s not usable after %s: %w", c.name, timeout, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// benchDeployment is the workload of the nodes scenario: replicas pods that
// tolerate every taint, so that any simulated node takes them.
func benchDeployment(replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": "bench"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:  []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
}

// deployAndWait creates benchDeployment (retrying while the API refuses
// it) and waits until nodes nodes are Ready and the Deployment is
// Available with every replica.
func deployAndWait(ctx context.Context, c *cluster, nodes int, timeout time.Duration) error {
	cfg := rest.CopyConfig(c.config)
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	replicas := int32(nodes)
	var last string
	created := false
	for {
		if !created {
			_, err := cs.AppsV1().Deployments("default").Create(ctx, benchDeployment(replicas), metav1.CreateOptions{})
			if err == nil {
				created = true
			} else {
				last = "create Deployment: " + err.Error()
			}
		}
		if created {
			ready, msg := nodesAndDeploymentReady(ctx, cs, nodes, replicas)
			if ready {
				return nil
			}
			last = msg
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready after %s: %s", c.name, timeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func nodesAndDeploymentReady(ctx context.Context, cs kubernetes.Interface, nodes int, replicas int32) (bool, string) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err.Error()
	}
	ready := 0
	for _, n := range list.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready < nodes {
		return false, fmt.Sprintf("%d of %d nodes Ready", ready, nodes)
	}
	d, err := cs.AppsV1().Deployments("default").Get(ctx, "bench", metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	for _, cond := range d.Status.Conditions {
		if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue && d.Status.AvailableReplicas == replicas {
			return true, ""
		}
	}
	return false, fmt.Sprintf("Deployment %d of %d replicas available", d.Status.AvailableReplicas, replicas)
}
