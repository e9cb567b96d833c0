// Package probe asks a cluster's API whether it is usable.
package probe

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// APIUsable succeeds once the API server accepts a namespace: the request
// passes authentication, admission and validation but, as a dry run, stores
// nothing.
func APIUsable(ctx context.Context, c kubernetes.Interface) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ephemera-probe"}}
	_, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}
