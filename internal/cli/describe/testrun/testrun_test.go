package testrun

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)

func at(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }

// local is how describe shows the time now+d.
func local(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }

func failedRun() *v1alpha1.TestRun {
	exit := int32(1)
	return &v1alpha1.TestRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "e2e-abcde", UID: "u-1", CreationTimestamp: *at(-10 * time.Minute)},
		Spec: v1alpha1.TestRunSpec{
			Cluster: v1alpha1.TestRunCluster{TemplateRef: "big", KubernetesVersion: "v1.35.4"},
			Runner: v1alpha1.TestRunner{
				Image:   "example.com/e2e:v1",
				Command: []string{"go", "test", "./e2e/...", "-run", "Test(A|B)"},
				Env:     []corev1.EnvVar{{Name: "FOCUS", Value: "x"}, {Name: "TOKEN"}},
			},
			Timeout:   &metav1.Duration{Duration: 20 * time.Minute},
			OnFailure: v1alpha1.FailureHold,
			HoldFor:   &metav1.Duration{Duration: 2 * time.Hour},
			Report: &v1alpha1.TestRunReport{GitHub: &v1alpha1.CommitStatusTarget{
				Repo: "example/app", SHA: "0123456789abcdef0123456789abcdef01234567", TokenSecretRef: v1alpha1.SecretKeySelector{Name: "gh"},
			}},
		},
		Status: v1alpha1.TestRunStatus{
			Phase: v1alpha1.TestRunFailed, TestCluster: "e2e-abcde", KubernetesVersion: "v1.35.4", Job: "e2e-abcde",
			StartTime: at(-9 * time.Minute), CompletionTime: at(-5*time.Minute - 30*time.Second), ExitCode: &exit,
			Results: &v1alpha1.TestResults{
				Tests: 42, Failures: 2, Errors: 1, Skipped: 3,
				Failed: []string{"e2e.TestA", "e2e.TestB", "e2e.TestC"},
			},
			Artifacts: "/root/.local/state/ephemera/server/runs/team-a/e2e-abcde",
			HeldUntil: at(2*time.Hour - 5*time.Minute - 30*time.Second),
			Reported:  []string{"github=failure"},
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionClusterReady, Status: metav1.ConditionTrue, Reason: "Ready", Message: "TestCluster e2e-abcde is Ready"},
				{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTestsFailed, Message: "exit code 1;\n3 of 42 tests failed"},
				{Type: v1alpha1.ConditionReported, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReported},
			},
		},
	}
}

func TestDescribe(t *testing.T) {
	events := []corev1.Event{
		{
			Type: corev1.EventTypeNormal, Reason: "Completed", Message: "3 of 42 tests failed", Source: corev1.EventSource{Component: "ephemera"},
			FirstTimestamp: *at(-5*time.Minute - 30*time.Second), LastTimestamp: *at(-5*time.Minute - 30*time.Second), Count: 1,
		},
		{
			Type: corev1.EventTypeWarning, Reason: "BackOff", Message: "waiting for a cluster", ReportingController: "ephemera.dev/testrun",
			FirstTimestamp: *at(-10 * time.Minute), LastTimestamp: *at(-9*time.Minute - 30*time.Second), Count: 3,
		},
	}
	matrix := &v1alpha1.TestRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "compat"},
		Spec: v1alpha1.TestRunSpec{
			Cluster: v1alpha1.TestRunCluster{TemplateRef: "default"},
			Runner:  v1alpha1.TestRunner{Image: "example.com/e2e:v1", Args: []string{"-v", "it's"}, ImagePullPolicy: corev1.PullNever},
			Matrix:  &v1alpha1.TestRunMatrix{KubernetesVersions: []string{"v1.35.4", "v1.36.3"}},
		},
		Status: v1alpha1.TestRunStatus{
			Phase: v1alpha1.TestRunRunning, StartTime: at(-90 * time.Second),
			Results: &v1alpha1.TestResults{Tests: 1, Failures: 25, Failed: []string{"a.T1"}},
			Cells: []v1alpha1.TestRunCell{
				{Name: "default/v1.35.4", Run: "compat-0", Phase: v1alpha1.TestRunFailed, Results: &v1alpha1.TestResults{Tests: 1, Failures: 25}},
				{Name: "default/v1.36.3", Run: "compat-1", Phase: v1alpha1.TestRunRunning},
			},
		},
	}
	tests := []struct {
		name   string
		tr     *v1alpha1.TestRun
		events []corev1.Event
		want   string
	}{
		{
			name:   "failed run, held, reported, with events",
			tr:     failedRun(),
			events: events,
			want: `Name:           e2e-abcde
Namespace:      team-a
Phase:          Failed
Cluster:        template big, Kubernetes v1.35.4
Runner:
  Image:        example.com/e2e:v1
  Command:      go test ./e2e/... -run 'Test(A|B)'
  Env:          FOCUS, TOKEN
  Artifacts:    /artifacts
Timeout:        20m0s
On failure:     Hold the cluster for 2h0m0s
Report:         github example/app@0123456 (ephemera/e2e-abcde)
TestCluster:    e2e-abcde
Kubernetes:     v1.35.4
Job:            e2e-abcde
Started:        ` + local(-9*time.Minute) + ` (9m ago)
Completed:      ` + local(-5*time.Minute-30*time.Second) + ` (5m30s ago)
Duration:       3m30s
Exit code:      1
Results:        42 tests, 2 failures, 1 error, 3 skipped
Failed tests:
  e2e.TestA
  e2e.TestB
  e2e.TestC
Artifacts:      /root/.local/state/ephemera/server/runs/team-a/e2e-abcde
Held until:     ` + local(2*time.Hour-5*time.Minute-30*time.Second) + ` (in 114m)
Reported:       github=failure
Conditions:
  TYPE           STATUS   REASON        MESSAGE
  ClusterReady   True     Ready         TestCluster e2e-abcde is Ready
  Complete       True     TestsFailed   exit code 1; 3 of 42 tests failed
  Reported       True     Reported      -
Events:
  TYPE      REASON      AGE                   FROM                   MESSAGE
  Warning   BackOff     9m30s (x3 over 10m)   ephemera.dev/testrun   waiting for a cluster
  Normal    Completed   5m30s                 ephemera               3 of 42 tests failed
`,
		},
		{
			name: "matrix",
			tr:   matrix,
			want: `Name:           compat
Namespace:      default
Phase:          Running
Matrix:         templates default × Kubernetes v1.35.4, v1.36.3 (2 cells)
Runner:
  Image:        example.com/e2e:v1 (pull Never)
  Command:      -
  Args:         -v 'it'\''s'
  Artifacts:    /artifacts
Timeout:        1h0m0s (default)
On failure:     Delete the cluster (default)
Started:        ` + local(-90*time.Second) + ` (90s ago)
Completed:      -
Duration:       90s so far
Results:        1 test, 25 failures, 0 errors, 0 skipped
Failed tests (1 of 25):
  a.T1
Cells:
  NAME              RUN        PHASE     TESTS   FAILURES
  default/v1.35.4   compat-0   Failed    1       25
  default/v1.36.3   compat-1   Running   -       -
Artifacts:      -
Reported:       -
Conditions:     <none>
Events:         <none>
`,
		},
		{
			name: "new run from a TestCluster",
			tr: &v1alpha1.TestRun{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "mine"},
				Spec: v1alpha1.TestRunSpec{
					Cluster: v1alpha1.TestRunCluster{TestClusterRef: "dev"}, Runner: v1alpha1.TestRunner{Image: "e2e:v1"},
					ArtifactsDir: "/out", OnFailure: v1alpha1.FailureDelete,
				},
			},
			want: `Name:           mine
Namespace:      default
Phase:          -
Cluster:        TestCluster dev (given: the run neither deletes nor holds it)
Runner:
  Image:        e2e:v1
  Command:      -
  Artifacts:    /out
Timeout:        1h0m0s (default)
On failure:     Delete the cluster
TestCluster:    -
Kubernetes:     -
Job:            -
Started:        -
Completed:      -
Duration:       -
Exit code:      -
Results:        -
Artifacts:      -
Reported:       -
Conditions:     <none>
Events:         <none>
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := describe(&b, tt.tr, tt.events, now); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, b.String()); d != "" {
				t.Errorf("describe mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestDescribeCommandErrors(t *testing.T) {
	t.Setenv(env.ServerKubeconfigEnv, "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no name", args: nil, want: "name one TestRun, like: ephemera describe testrun NAME (got 0 names; 'ephemera get testruns' lists them)"},
		{name: "empty namespace", args: []string{"e2e", "-n", ""}, want: "--namespace must not be empty"},
		{name: "no server", args: []string{"e2e"}, want: "no ephemera server found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := NewCommand(&env.Env{Out: &out, ErrOut: &out, StateDir: t.TempDir()})
			cmd.SetArgs(tt.args)
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			err := cmd.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}
