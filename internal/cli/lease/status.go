package lease

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
	"github.com/ephemera-dev/ephemera/internal/progress"
)

// progressState is what the progress reporter shows now.
type progressState struct{ step, detail string }

// show starts a new step when the TestCluster's state changed and adds the
// Ready condition's message as detail.
func (s progressState) show(p progress.Reporter, tc *v1alpha1.TestCluster) progressState {
	step, detail := describe(tc)
	if step != s.step {
		p.Start(step)
		s = progressState{step: step}
	}
	if detail != s.detail {
		if detail != "" {
			p.Update(detail)
		}
		s.detail = detail
	}
	return s
}

// describe says what a TestCluster waits for: a step that changes with its
// phase, queue position and cluster, and the Ready condition's message.
func describe(tc *v1alpha1.TestCluster) (step, detail string) {
	source := "pool " + tc.Spec.PoolRef
	if tc.Spec.PoolRef == "" {
		source = "template " + tc.Spec.TemplateRef
	}
	switch tc.Status.Phase {
	case "":
		step = "Requesting a cluster from " + source
	case v1alpha1.TestClusterQueued:
		step = "Queued in " + source
		if tc.Status.QueuePosition > 0 {
			step = fmt.Sprintf("Queued: position %d in %s", tc.Status.QueuePosition, source)
		}
	case v1alpha1.TestClusterProvisioning:
		step = "Provisioning a cluster from " + source
		if tc.Spec.ClusterName != "" {
			step = fmt.Sprintf("Provisioning cluster %s from %s", tc.Spec.ClusterName, source)
		}
	case v1alpha1.TestClusterReady:
		step = "Fetching the kubeconfig of cluster " + tc.Spec.ClusterName
	default:
		step = fmt.Sprintf("%s (cluster from %s)", tc.Status.Phase, source)
	}
	if tc.Status.Phase != v1alpha1.TestClusterReady {
		detail = readyMessage(tc, "")
	}
	return step, detail
}

// waitingFor is describe as one phrase, for errors.
func waitingFor(tc *v1alpha1.TestCluster) string {
	step, detail := describe(tc)
	if detail == "" {
		return step
	}
	return step + ": " + detail
}

// readyMessage is the Ready condition's message, or def.
func readyMessage(tc *v1alpha1.TestCluster, def string) string {
	if c := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Message != "" {
		return c.Message
	}
	return def
}

// ReadyLine is the human summary printed on stderr once the cluster is Ready.
func ReadyLine(tc *v1alpha1.TestCluster, took time.Duration, now time.Time) string {
	s := fmt.Sprintf("TestCluster %s/%s is Ready after %s (cluster %s", tc.Namespace, tc.Name, took.Round(time.Millisecond), printer.OrDash(tc.Spec.ClusterName))
	if v := tc.Status.KubernetesVersion; v != "" {
		s += ", Kubernetes " + v
	}
	if t := tc.Status.ExpiresAt; t != nil {
		s += fmt.Sprintf(", expires %s, %s", t.Local().Format(time.RFC3339), printer.Relative(t.Time, now))
	}
	return s + ")"
}
