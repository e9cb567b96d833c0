package testrun

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/artifact"
	"github.com/ephemera-dev/ephemera/internal/report"
)

func TestCells(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec v1alpha1.TestRunSpec
		want []string
	}{
		{"versions of one template", v1alpha1.TestRunSpec{
			Cluster: v1alpha1.TestRunCluster{TemplateRef: "small"},
			Matrix:  &v1alpha1.TestRunMatrix{KubernetesVersions: []string{"v1.35.4", "v1.36.3"}},
		}, []string{"v1.35.4", "v1.36.3"}},
		{"templates at the spec's version", v1alpha1.TestRunSpec{
			Cluster: v1alpha1.TestRunCluster{KubernetesVersion: "v1.35.4"},
			Matrix:  &v1alpha1.TestRunMatrix{Templates: []string{"a", "b"}},
		}, []string{"a/v1.35.4", "b/v1.35.4"}},
		{"templates by versions, templates outermost", v1alpha1.TestRunSpec{
			Matrix: &v1alpha1.TestRunMatrix{Templates: []string{"a", "b"}, KubernetesVersions: []string{"v1.35.4", "v1.36.3"}},
		}, []string{"a/v1.35.4", "a/v1.36.3", "b/v1.35.4", "b/v1.36.3"}},
		{"templates at each template's version", v1alpha1.TestRunSpec{
			Matrix: &v1alpha1.TestRunMatrix{Templates: []string{"a", "b"}},
		}, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range Cells(tc.spec) {
				got = append(got, c.Name())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("cells (-want +got):\n%s", diff)
			}
		})
	}
}

func runWith(conds ...metav1.Condition) *v1alpha1.TestRun {
	run := &v1alpha1.TestRun{}
	for _, c := range conds {
		meta.SetStatusCondition(&run.Status.Conditions, c)
	}
	return run
}

func cond(typ string, s metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: reason}
}

func TestPhaseOf(t *testing.T) {
	for _, tc := range []struct {
		run  *v1alpha1.TestRun
		want v1alpha1.TestRunPhase
	}{
		{runWith(), v1alpha1.TestRunPending},
		{runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionFalse, v1alpha1.ReasonWaiting)), v1alpha1.TestRunPending},
		{runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionFalse, v1alpha1.ReasonRunning)), v1alpha1.TestRunRunning},
		{runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonPassed)), v1alpha1.TestRunSucceeded},
		{runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonTestsFailed)), v1alpha1.TestRunFailed},
		{runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonTimedOut)), v1alpha1.TestRunFailed},
		{runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonClusterError)), v1alpha1.TestRunError},
		{runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonRunnerError)), v1alpha1.TestRunError},
	} {
		if got := PhaseOf(tc.run); got != tc.want {
			t.Errorf("PhaseOf(%+v) = %s, want %s", tc.run.Status.Conditions, got, tc.want)
		}
	}
}

func TestBuildJob(t *testing.T) {
	run := &v1alpha1.TestRun{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e", Namespace: "ci"},
		Spec: v1alpha1.TestRunSpec{
			Timeout: &metav1.Duration{Duration: 90 * time.Second},
			Runner: v1alpha1.TestRunner{
				Image: "example.com/smoke:v1", Command: []string{"/smoke"}, Args: []string{"--fail"},
				// A user's KUBECONFIG does not replace ephemera's.
				Env: []corev1.EnvVar{{Name: "KUBECONFIG", Value: "/mine"}, {Name: "SUITE", Value: "fast"}},
			},
		},
	}
	tc := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}, Spec: v1alpha1.TestClusterSpec{ClusterName: "e2e-abcde"}, Status: v1alpha1.TestClusterStatus{
		KubernetesVersion: "v1.36.3",
		Ingress:           &v1alpha1.IngressStatus{Address: "10.251.0.1", Domain: "10-251-0-1.sslip.io"},
	}}

	r := &Reconciler{ArtifactsRoot: "/state/server/artifacts"}
	job := r.buildJob(run, tc, "https://10.250.0.1:40000")
	if *job.Spec.BackoffLimit != 0 || *job.Spec.ActiveDeadlineSeconds != 90 {
		t.Errorf("backoffLimit %d, activeDeadlineSeconds %d; want 0 and 90", *job.Spec.BackoffLimit, *job.Spec.ActiveDeadlineSeconds)
	}
	pod := job.Spec.Template.Spec
	// On the pod network: the node's loopback (the management plane's
	// etcd) is not the runner's.
	if pod.HostNetwork || pod.RestartPolicy != corev1.RestartPolicyNever || *pod.AutomountServiceAccountToken {
		t.Errorf("pod: hostNetwork %v, restartPolicy %s, automount %v", pod.HostNetwork, pod.RestartPolicy, *pod.AutomountServiceAccountToken)
	}
	ctr := pod.Containers[0]
	env := map[string]string{}
	for _, e := range ctr.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		env[e.Name] = e.Value
	}
	want := map[string]string{
		"SUITE":                       "fast",
		"KUBECONFIG":                  "/etc/ephemera/kubeconfig",
		"EPHEMERA_CLUSTER_NAME":       "e2e",
		"EPHEMERA_CLUSTER_ENDPOINT":   "https://10.250.0.1:40000",
		"EPHEMERA_KUBERNETES_VERSION": "v1.36.3",
		"EPHEMERA_ARTIFACTS":          "/artifacts",
		"EPHEMERA_INGRESS_ADDRESS":    "10.251.0.1",
		"EPHEMERA_INGRESS_DOMAIN":     "10-251-0-1.sslip.io",
		"EPHEMERA_TESTRUN":            "e2e",
	}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/smoke", "--fail"}, append(ctr.Command, ctr.Args...)); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	vols := map[string]corev1.VolumeSource{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v.VolumeSource
	}
	if s := vols["kubeconfig"].Secret; s == nil || s.SecretName != "e2e-runner" {
		t.Errorf("kubeconfig volume %+v, want Secret e2e-runner", vols["kubeconfig"])
	}
	if hp := vols["artifacts"].HostPath; hp == nil || hp.Path != "/state/server/artifacts/ci/e2e" {
		t.Errorf("artifacts volume %+v, want hostPath /state/server/artifacts/ci/e2e", vols["artifacts"])
	}

	// Without a shared dir (operator mode) artefacts stay in the pod.
	job = (&Reconciler{}).buildJob(run, tc, "https://x")
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.Name == "artifacts" && v.EmptyDir == nil {
			t.Errorf("operator mode artifacts volume %+v, want emptyDir", v.VolumeSource)
		}
	}
	if job.Spec.Template.Spec.HostNetwork {
		t.Error("operator mode runner uses the host network")
	}
}

func TestObserveJobFinished(t *testing.T) {
	run := &v1alpha1.TestRun{Spec: v1alpha1.TestRunSpec{Timeout: &metav1.Duration{Duration: time.Minute}}}
	for _, tc := range []struct {
		cond batchv1.JobCondition
		want string
	}{
		{batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}, v1alpha1.ReasonPassed},
		{batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonDeadlineExceeded}, v1alpha1.ReasonTimedOut},
		{batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded}, v1alpha1.ReasonRunnerError},
	} {
		job := &batchv1.Job{Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{tc.cond}}}
		c, done := jobFinished(job)
		if !done {
			t.Fatalf("%+v: not finished", tc.cond)
		}
		out := jobOutcomeOf(run, c, nil, true)
		if out.reason != tc.want {
			t.Errorf("%s/%s: reason %s, want %s", tc.cond.Type, tc.cond.Reason, out.reason, tc.want)
		}
	}
	// A failed Job whose container exited is a test failure, not an error.
	exit := int32(2)
	failed := &batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded}
	if out := jobOutcomeOf(run, failed, &exit, true); out.reason != v1alpha1.ReasonTestsFailed || out.message != "the test command exited 2" {
		t.Errorf("exit 2: %+v", out)
	}
	// A deadline that passed before the container ever ran is not a
	// test that timed out: the runner never started.
	never := &batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonDeadlineExceeded, Message: `runner pod "x" is Pending: 0/1 nodes are available`}
	if out := jobOutcomeOf(run, never, nil, false); out.reason != v1alpha1.ReasonRunnerError {
		t.Errorf("a runner that never started: %+v, want RunnerError", out)
	}
}

func TestSumResults(t *testing.T) {
	cells := []v1alpha1.TestRunCell{
		{Name: "v1.35.4", Results: &v1alpha1.TestResults{Tests: 3, Failures: 1, Failed: []string{"smoke/TestA"}}},
		{Name: "v1.36.3"},
		{Name: "v1.34.4", Results: &v1alpha1.TestResults{Tests: 2, Errors: 1, Skipped: 1, Failed: []string{"smoke/TestB"}}},
	}
	want := &v1alpha1.TestResults{Tests: 5, Failures: 1, Errors: 1, Skipped: 1, Failed: []string{"v1.35.4: smoke/TestA", "v1.34.4: smoke/TestB"}}
	if diff := cmp.Diff(want, sumResults(cells)); diff != "" {
		t.Errorf("sum (-want +got):\n%s", diff)
	}
	if sumResults([]v1alpha1.TestRunCell{{Name: "x"}}) != nil {
		t.Error("cells without results sum up to results")
	}
}

func TestDescribe(t *testing.T) {
	r := &Reconciler{}
	failed := runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonTestsFailed))
	failed.Status.Results = &v1alpha1.TestResults{Tests: 4, Failures: 1, Failed: []string{"smoke/TestMeantToFail"}}
	for _, tc := range []struct {
		run      *v1alpha1.TestRun
		state    report.State
		wantDesc string
	}{
		{runWith(), report.StatePending, "waiting for a cluster"},
		{runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionFalse, v1alpha1.ReasonRunning)), report.StateRunning, "the tests are running"},
		{failed, report.StateFailure, "4 tests, 1 failed, 0 errors, 0 skipped: smoke/TestMeantToFail"},
		{runWith(cond(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonRunnerError)), report.StateError, v1alpha1.ReasonRunnerError},
	} {
		state, desc := r.describe(tc.run)
		if state != tc.state || desc != tc.wantDesc {
			t.Errorf("describe = %s %q, want %s %q", state, desc, tc.state, tc.wantDesc)
		}
	}
}

func TestTargetURL(t *testing.T) {
	signer, err := artifact.NewSigner([]byte(strings.Repeat("k", artifact.KeySize)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	run := &v1alpha1.TestRun{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "e2e"}}
	r := &Reconciler{ArtifactsRoot: "/srv/artifacts", ExternalURL: "https://ci.example.com:8443/", Links: signer, LinkTTL: time.Hour, Now: func() time.Time { return now }}
	got := r.targetURL(run, &v1alpha1.CommitStatusTarget{})
	want := "https://ci.example.com:8443" + signer.RunPath("team-a", "e2e", now.Add(time.Hour))
	if got != want {
		t.Errorf("targetURL = %q, want %q", got, want)
	}
	// The link works until it expires, for this run alone.
	rest := strings.TrimPrefix(got, "https://ci.example.com:8443"+artifact.Path+artifact.SignedDir+"/")
	if p, err := signer.Verify(rest+"test.log", now.Add(59*time.Minute)); err != nil || p != "team-a/e2e/test.log" {
		t.Errorf("the link before expiry: %q, %v", p, err)
	}
	if _, err := signer.Verify(rest, now.Add(time.Hour)); err == nil {
		t.Error("the link works past its TTL")
	}
	if got := r.targetURL(run, &v1alpha1.CommitStatusTarget{TargetURL: "https://ci.example.com/jobs/1"}); got != "https://ci.example.com/jobs/1" {
		t.Errorf("the user's targetURL was replaced: %q", got)
	}
	r.Links = nil
	if got := r.targetURL(run, &v1alpha1.CommitStatusTarget{}); got != "" {
		t.Errorf("without a signer: %q, want no link (an unsigned one would be public)", got)
	}
}
