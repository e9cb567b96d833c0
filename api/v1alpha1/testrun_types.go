package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRun defaults, used when a TestRun leaves them unset.
const (
	// DefaultRunTimeout bounds the test command (TestRun and `ephemera
	// run`).
	DefaultRunTimeout = time.Hour
	// DefaultHoldFor is how long a failed run's cluster is kept with
	// onFailure: Hold (TestRun and `ephemera run`).
	DefaultHoldFor = 2 * time.Hour
	// DefaultArtifactsDir is where the test writes artefacts (JUnit XML
	// among them) in the runner container.
	DefaultArtifactsDir = "/artifacts"
)

// FailurePolicy says what becomes of a run's cluster when the run fails.
// +kubebuilder:validation:Enum=Delete;Hold
type FailurePolicy string

// Failure policies.
const (
	// FailureDelete deletes the cluster, as after a pass.
	FailureDelete FailurePolicy = "Delete"
	// FailureHold keeps the cluster for spec.holdFor, to debug.
	FailureHold FailurePolicy = "Hold"
)

// TestRunSpec says what to test, where, and whom to tell.
// +kubebuilder:validation:XValidation:rule="has(self.matrix) ? !has(self.cluster.poolRef) && !has(self.cluster.testClusterRef) : true",message="a matrix builds one cluster per cell from templates: use spec.cluster.templateRef or spec.matrix.templates, not poolRef or testClusterRef"
// +kubebuilder:validation:XValidation:rule="has(self.matrix) && has(self.matrix.templates) ? !has(self.cluster.templateRef) : true",message="spec.matrix.templates replaces spec.cluster.templateRef: set one of them"
// +kubebuilder:validation:XValidation:rule="has(self.matrix) && has(self.matrix.templates) ? true : (has(self.cluster.poolRef) ? 1 : 0) + (has(self.cluster.templateRef) ? 1 : 0) + (has(self.cluster.testClusterRef) ? 1 : 0) == 1",message="set exactly one of spec.cluster.poolRef (a warm cluster from a ClusterPool), spec.cluster.templateRef (a new cluster from a ClusterTemplate) or spec.cluster.testClusterRef (a TestCluster you hold)"
// +kubebuilder:validation:XValidation:rule="!has(self.cluster.kubernetesVersion) || !has(self.matrix) || !has(self.matrix.kubernetesVersions)",message="spec.matrix.kubernetesVersions replaces spec.cluster.kubernetesVersion: set one of them"
// +kubebuilder:validation:XValidation:rule="!has(self.cluster.kubernetesVersion) || has(self.cluster.templateRef) || (has(self.matrix) && has(self.matrix.templates))",message="spec.cluster.kubernetesVersion overrides a template's version: use it with spec.cluster.templateRef or spec.matrix.templates, not with a pool or an existing TestCluster"
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a TestRun's spec cannot change; delete it and create another"
type TestRunSpec struct {
	// cluster is where the tests run.
	// +required
	Cluster TestRunCluster `json:"cluster"`

	// runner is the test process: a container run as a Job in the
	// management cluster.
	// +required
	Runner TestRunner `json:"runner"`

	// timeout bounds the test command; a run past it fails with reason
	// TimedOut. Defaults to 1h.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="spec.timeout must be at least 1s, like 20m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// artifactsDir is where the test writes its artefacts in the runner
	// container ($EPHEMERA_ARTIFACTS); JUnit XML files there are read
	// into status.results. Defaults to /artifacts.
	// +optional
	// +kubebuilder:validation:Pattern=`^/`
	// +kubebuilder:validation:MaxLength=256
	ArtifactsDir string `json:"artifactsDir,omitempty"`

	// onFailure says what becomes of the cluster when the run fails:
	// Delete (the default) or Hold it for holdFor. A passing run's
	// cluster is always deleted, and a cluster given by testClusterRef is
	// never touched.
	// +optional
	OnFailure FailurePolicy `json:"onFailure,omitempty"`

	// holdFor is how long a failed run's cluster is kept with onFailure:
	// Hold. Defaults to 2h; the server's --max-hold caps it.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="spec.holdFor must be at least 1s, like 2h"
	HoldFor *metav1.Duration `json:"holdFor,omitempty"`

	// matrix runs the tests once per cell: every template by every
	// Kubernetes version. Each cell is a child TestRun with its own
	// cluster; this run sums them up.
	// +optional
	Matrix *TestRunMatrix `json:"matrix,omitempty"`

	// report posts commit statuses: pending when the run starts, then
	// success, failure or error.
	// +optional
	Report *TestRunReport `json:"report,omitempty"`
}

// TestRunCluster is the cluster source: exactly one of poolRef,
// templateRef or testClusterRef.
type TestRunCluster struct {
	// poolRef claims a warm cluster from this ClusterPool.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	PoolRef string `json:"poolRef,omitempty"`
	// templateRef builds a new cluster from this ClusterTemplate.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	TemplateRef string `json:"templateRef,omitempty"`
	// kubernetesVersion overrides the template's version, like v1.35.4.
	// +optional
	// +kubebuilder:validation:Pattern=`^v1\.[0-9]+\.[0-9]+$`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// testClusterRef runs on a TestCluster that exists already; the run
	// neither deletes nor holds it.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	TestClusterRef string `json:"testClusterRef,omitempty"`
}

// TestRunner is a container that runs the tests. It gets KUBECONFIG and
// the cluster's facts in its environment: EPHEMERA_CLUSTER_NAME,
// EPHEMERA_CLUSTER_ENDPOINT, EPHEMERA_KUBERNETES_VERSION, EPHEMERA_ARTIFACTS and
// EPHEMERA_TESTRUN.
type TestRunner struct {
	// image is the container image. In embedded mode load it into the
	// management plane's node (`ephemera load image ARCHIVE --server`): the
	// node has no route to registries. In operator mode the management
	// cluster pulls it as for any pod.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image"`
	// command replaces the image's entrypoint.
	// +optional
	Command []string `json:"command,omitempty"`
	// args replace the image's default arguments.
	// +optional
	Args []string `json:"args,omitempty"`
	// env adds environment variables; ephemera's own (KUBECONFIG,
	// EPHEMERA_*) cannot be replaced.
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
	// imagePullPolicy is the container's; Kubernetes' default applies when
	// unset (IfNotPresent, or Always for a latest tag).
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
}

// TestRunMatrix lists the cells' dimensions; a missing one has the single
// value of spec.cluster.
type TestRunMatrix struct {
	// kubernetesVersions, like [v1.35.4, v1.36.3].
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=set
	// +kubebuilder:validation:items:Pattern=`^v1\.[0-9]+\.[0-9]+$`
	KubernetesVersions []string `json:"kubernetesVersions,omitempty"`
	// templates are ClusterTemplates in the run's namespace.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=set
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	Templates []string `json:"templates,omitempty"`
}

// TestRunReport names where commit statuses go.
type TestRunReport struct {
	// github posts a commit status to GitHub.
	// +optional
	GitHub *CommitStatusTarget `json:"github,omitempty"`
	// gitlab posts a commit status to GitLab.
	// +optional
	GitLab *CommitStatusTarget `json:"gitlab,omitempty"`
}

// CommitStatusTarget is one commit on one forge.
type CommitStatusTarget struct {
	// repo is owner/name on GitHub, or the project's path (group/name) or
	// numeric ID on GitLab.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Repo string `json:"repo"`
	// sha is the commit's full SHA.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$`
	SHA string `json:"sha"`
	// context names the status (GitLab: its name). Defaults to
	// ephemera/<run name>.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Context string `json:"context,omitempty"`
	// url is the API for GitHub Enterprise (https://ghe.example.com/api/v3/)
	// or a self-hosted GitLab (https://gitlab.example.com). Defaults to
	// github.com or gitlab.com.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	URL string `json:"url,omitempty"`
	// targetURL is where the status links to, like the CI job's page.
	// Defaults to the run's log on the server (serve --external-url).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	TargetURL string `json:"targetURL,omitempty"`
	// tokenSecretRef is the Secret key, in the run's namespace, holding
	// the API token.
	// +required
	TokenSecretRef SecretKeySelector `json:"tokenSecretRef"`
}

// SecretKeySelector names a key of a Secret in the same namespace.
type SecretKeySelector struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key in the Secret; defaults to token.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// TestRunPhase summarises a TestRun, derived from its conditions.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Error
type TestRunPhase string

// Phases of a TestRun.
const (
	// TestRunPending: waiting for its cluster.
	TestRunPending TestRunPhase = "Pending"
	// TestRunRunning: the tests run.
	TestRunRunning TestRunPhase = "Running"
	// TestRunSucceeded: the command exited 0 and no JUnit test failed.
	TestRunSucceeded TestRunPhase = "Succeeded"
	// TestRunFailed: the tests failed or timed out.
	TestRunFailed TestRunPhase = "Failed"
	// TestRunError: the tests could not run (no cluster, no image...).
	TestRunError TestRunPhase = "Error"
)

// TestRun condition types and reasons.
const (
	// ConditionClusterReady: the run's cluster is ready.
	ConditionClusterReady = "ClusterReady"
	// ConditionComplete: the run finished; its reason says how.
	ConditionComplete = "Complete"
	// ConditionReported: the commit statuses were posted.
	ConditionReported = "Reported"

	ReasonWaiting      = "Waiting"
	ReasonRunning      = "Running"
	ReasonPassed       = "Passed"
	ReasonTestsFailed  = "TestsFailed"
	ReasonTimedOut     = "TimedOut"
	ReasonClusterError = "ClusterError"
	ReasonRunnerError  = "RunnerError"
	ReasonReportFailed = "ReportFailed"
	ReasonReported     = "Reported"
)

// TestResults sum up JUnit XML.
type TestResults struct {
	Tests    int32 `json:"tests"`
	Failures int32 `json:"failures"`
	Errors   int32 `json:"errors"`
	Skipped  int32 `json:"skipped"`
	// failed names the failing tests (suite.name), at most 20.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	Failed []string `json:"failed,omitempty"`
}

// TestRunCell is one cell of a matrix.
type TestRunCell struct {
	// name is the cell, like default/v1.35.4 (template/version).
	Name string `json:"name"`
	// run is the child TestRun.
	Run string `json:"run"`
	// template and kubernetesVersion are the cell's values.
	// +optional
	Template string `json:"template,omitempty"`
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// phase is the child's.
	// +optional
	Phase TestRunPhase `json:"phase,omitempty"`
	// results are the child's.
	// +optional
	Results *TestResults `json:"results,omitempty"`
}

// TestRunStatus is what the server observed.
type TestRunStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// phase summarises the conditions.
	// +optional
	Phase TestRunPhase `json:"phase,omitempty"`
	// conditions: ClusterReady, Complete and Reported.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// testCluster is the TestCluster the run uses.
	// +optional
	TestCluster string `json:"testCluster,omitempty"`
	// kubernetesVersion is the cluster's release.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// job is the runner Job, in the same namespace.
	// +optional
	Job string `json:"job,omitempty"`
	// startTime is when the runner started; completionTime when the run
	// finished.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// exitCode is the test command's.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`
	// results sum up the JUnit XML the tests wrote (for a matrix: every
	// cell's).
	// +optional
	Results *TestResults `json:"results,omitempty"`
	// cells are a matrix's, in order.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Cells []TestRunCell `json:"cells,omitempty"`
	// artifacts is where the run's artefacts (test.log, JUnit, for a
	// matrix the merged junit.xml) are kept on the server's host.
	// +optional
	Artifacts string `json:"artifacts,omitempty"`
	// heldUntil is when a failed run's held cluster goes.
	// +optional
	HeldUntil *metav1.Time `json:"heldUntil,omitempty"`
	// reported is the last state posted to each forge, like
	// github=pending.
	// +optional
	// +kubebuilder:validation:MaxItems=4
	Reported []string `json:"reported,omitempty"`
}

// TestRun runs tests against a test cluster.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tr
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= (has(self.spec.matrix) ? 46 : 50)",message="a TestRun's name is at most 50 characters, 46 with a matrix: its Job, Secrets and cells are named after it"
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.status.testCluster`
// +kubebuilder:printcolumn:name="Tests",type=integer,JSONPath=`.status.results.tests`
// +kubebuilder:printcolumn:name="Failures",type=integer,JSONPath=`.status.results.failures`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TestRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what to test, where, and whom to tell.
	// +required
	Spec TestRunSpec `json:"spec"`
	// status is what the server observed.
	// +optional
	Status TestRunStatus `json:"status,omitempty"`
}

// TestRunList is a list of TestRuns.
// +kubebuilder:object:root=true
type TestRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// items are the TestRuns.
	Items []TestRun `json:"items"`
}

// TimeoutOrDefault returns spec.timeout or DefaultRunTimeout.
func (s *TestRunSpec) TimeoutOrDefault() time.Duration {
	if s.Timeout != nil {
		return s.Timeout.Duration
	}
	return DefaultRunTimeout
}

// HoldForOrDefault returns spec.holdFor or DefaultHoldFor.
func (s *TestRunSpec) HoldForOrDefault() time.Duration {
	if s.HoldFor != nil {
		return s.HoldFor.Duration
	}
	return DefaultHoldFor
}

// ArtifactsDirOrDefault returns spec.artifactsDir or DefaultArtifactsDir.
func (s *TestRunSpec) ArtifactsDirOrDefault() string {
	if s.ArtifactsDir != "" {
		return s.ArtifactsDir
	}
	return DefaultArtifactsDir
}
