package testrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/get/testruns"
)

// fakeSource is a fake management plane (pod logs need a kubelet): it
// serves TestRuns, Job pods and logs from maps, and each wait applies the
// next of steps, so a test scripts how the world changes while --follow
// waits.
type fakeSource struct {
	runs  map[string]*v1alpha1.TestRun
	pods  map[string][]corev1.Pod // by Job
	logs  map[string]string       // by pod
	steps []func(*fakeSource)
	// logCalls records the Log calls: pod/container follow=bool.
	logCalls []string
}

var _ source = (*fakeSource)(nil)

func (f *fakeSource) TestRun(ctx context.Context, key client.ObjectKey) (*v1alpha1.TestRun, error) {
	return testruns.Get(ctx, mapReader{f}, key)
}

func (f *fakeSource) JobPods(_ context.Context, _, job string) ([]corev1.Pod, error) {
	return f.pods[job], nil
}

func (f *fakeSource) Log(_ context.Context, _, pod, container string, follow bool) (io.ReadCloser, error) {
	f.logCalls = append(f.logCalls, fmt.Sprintf("%s/%s follow=%v", pod, container, follow))
	log, ok := f.logs[pod]
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), pod)
	}
	return io.NopCloser(strings.NewReader(log)), nil
}

func (f *fakeSource) wait(context.Context) error {
	if len(f.steps) == 0 {
		return errors.New("fake: waited, but nothing is left to happen")
	}
	step := f.steps[0]
	f.steps = f.steps[1:]
	step(f)
	return nil
}

// mapReader is the fake's client.Reader of TestRuns, for testruns.Get.
type mapReader struct{ f *fakeSource }

func (m mapReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	tr, ok := m.f.runs[key.Name]
	if !ok || tr.Namespace != key.Namespace {
		return apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("testruns").GroupResource(), key.Name)
	}
	tr.DeepCopyInto(obj.(*v1alpha1.TestRun))
	return nil
}

func (mapReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("fake: List is not used")
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testRun(name string, phase v1alpha1.TestRunPhase, job string, conds ...metav1.Condition) *v1alpha1.TestRun {
	return &v1alpha1.TestRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       v1alpha1.TestRunSpec{Cluster: v1alpha1.TestRunCluster{PoolRef: "ci"}, Runner: v1alpha1.TestRunner{Image: "example.com/e2e:v1"}},
		Status:     v1alpha1.TestRunStatus{Phase: phase, Job: job, Conditions: conds, Artifacts: "/srv/ephemera/runs/default/" + name},
	}
}

// jobPod is a pod of a runner Job whose container "test" is in state.
func jobPod(name string, created time.Duration, state corev1.ContainerState) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(t0.Add(created))},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "test", Image: "example.com/e2e:v1"}}},
		Status: corev1.PodStatus{
			Phase:             corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "test", State: state}},
		},
	}
}

var (
	running    = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	terminated = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}
	creating   = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	pullError  = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "example.com/e2e:v1"`}}
	queued     = metav1.Condition{Type: v1alpha1.ConditionClusterReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonWaiting, Message: "TestCluster e2e is Queued: position 2"}
)

// matrixRun is a matrix run with two cells, compat-0 and compat-1.
func matrixRun() *v1alpha1.TestRun {
	tr := testRun("compat", v1alpha1.TestRunRunning, "")
	tr.Spec.Cluster = v1alpha1.TestRunCluster{TemplateRef: "default"}
	tr.Spec.Matrix = &v1alpha1.TestRunMatrix{KubernetesVersions: []string{"v1.35.4", "v1.36.3"}}
	tr.Status.Cells = []v1alpha1.TestRunCell{
		{Name: "default/v1.35.4", Run: "compat-0", Phase: v1alpha1.TestRunFailed},
		{Name: "default/v1.36.3", Run: "compat-1", Phase: v1alpha1.TestRunPending},
	}
	return tr
}

func runs(trs ...*v1alpha1.TestRun) map[string]*v1alpha1.TestRun {
	m := map[string]*v1alpha1.TestRun{}
	for _, tr := range trs {
		m[tr.Name] = tr
	}
	return m
}

func TestLogs(t *testing.T) {
	tests := []struct {
		name    string
		src     func() *fakeSource
		opts    options
		run     string
		want    string // stdout
		wantErr []string
		// wantErrOut is what stderr says, line by line.
		wantErrOut string
		wantLogs   []string
	}{
		{
			name: "finished run",
			src: func() *fakeSource {
				return &fakeSource{
					runs: runs(testRun("e2e", v1alpha1.TestRunFailed, "e2e")),
					pods: map[string][]corev1.Pod{"e2e": {jobPod("e2e-x1", 0, terminated)}},
					logs: map[string]string{"e2e-x1": "=== RUN TestA\n--- FAIL: TestA\n"},
				}
			},
			run:      "e2e",
			want:     "=== RUN TestA\n--- FAIL: TestA\n",
			wantLogs: []string{"e2e-x1/test follow=false"},
		},
		{
			name: "follow a running run; the newest pod of a Job that retried",
			src: func() *fakeSource {
				return &fakeSource{
					runs: runs(testRun("e2e", v1alpha1.TestRunRunning, "e2e")),
					pods: map[string][]corev1.Pod{"e2e": {jobPod("e2e-b", time.Minute, running), jobPod("e2e-a", 0, terminated)}},
					logs: map[string]string{"e2e-a": "first try\n", "e2e-b": "second try\n"},
				}
			},
			opts:     options{follow: true},
			run:      "e2e",
			want:     "second try\n",
			wantLogs: []string{"e2e-b/test follow=true"},
		},
		{
			name: "pending, not following",
			src: func() *fakeSource {
				return &fakeSource{runs: runs(testRun("e2e", v1alpha1.TestRunPending, "", queued))}
			},
			run:     "e2e",
			wantErr: []string{"TestRun default/e2e is Pending, waiting for its cluster (TestCluster e2e is Queued: position 2); try again or use --follow"},
		},
		{
			name: "pending, following: waits for the pod and its container",
			src: func() *fakeSource {
				return &fakeSource{
					runs: runs(testRun("e2e", v1alpha1.TestRunPending, "", queued)),
					logs: map[string]string{"e2e-x1": "ok\n"},
					steps: []func(*fakeSource){
						func(f *fakeSource) {}, // nothing new: no second line
						func(f *fakeSource) {
							f.runs["e2e"] = testRun("e2e", v1alpha1.TestRunRunning, "e2e")
						},
						func(f *fakeSource) {
							f.pods = map[string][]corev1.Pod{"e2e": {jobPod("e2e-x1", 0, creating)}}
						},
						func(f *fakeSource) {
							f.pods = map[string][]corev1.Pod{"e2e": {jobPod("e2e-x1", 0, running)}}
						},
					},
				}
			},
			opts: options{follow: true},
			run:  "e2e",
			want: "ok\n",
			wantErrOut: `Waiting: TestRun default/e2e is Pending, waiting for its cluster (TestCluster e2e is Queued: position 2)
Waiting: TestRun default/e2e: Job e2e has no pod yet
Waiting: TestRun default/e2e: container test of pod e2e-x1 is waiting: ContainerCreating
Container test of pod e2e-x1 started
`,
			wantLogs: []string{"e2e-x1/test follow=true"},
		},
		{
			name: "an image that cannot be pulled",
			src: func() *fakeSource {
				return &fakeSource{
					runs: runs(testRun("e2e", v1alpha1.TestRunRunning, "e2e")),
					pods: map[string][]corev1.Pod{"e2e": {jobPod("e2e-x1", 0, pullError)}},
				}
			},
			run: "e2e",
			wantErr: []string{
				`TestRun default/e2e: container test of pod e2e-x1 is waiting: ImagePullBackOff: Back-off pulling image "example.com/e2e:v1"`,
				"ephemera load image ARCHIVE --server",
				"try again or use --follow",
			},
		},
		{
			name: "finished, its container never started",
			src: func() *fakeSource {
				tr := testRun("e2e", v1alpha1.TestRunError, "e2e", metav1.Condition{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonRunnerError, Message: "the image cannot be pulled"})
				return &fakeSource{runs: runs(tr), pods: map[string][]corev1.Pod{"e2e": {jobPod("e2e-x1", 0, pullError)}}}
			},
			opts:    options{follow: true},
			run:     "e2e",
			wantErr: []string{"TestRun default/e2e is Error, and the test container of its pod e2e-x1 never started (it is waiting: ImagePullBackOff", "so it wrote no log: the image cannot be pulled"},
		},
		{
			name: "pod gone",
			src: func() *fakeSource {
				return &fakeSource{runs: runs(testRun("e2e", v1alpha1.TestRunSucceeded, "e2e"))}
			},
			opts:    options{follow: true},
			run:     "e2e",
			wantErr: []string{"the pod of TestRun default/e2e (Job e2e) is gone, and its log with it; the server's host keeps a copy in /srv/ephemera/runs/default/e2e/test.log"},
		},
		{
			name: "pod gone between the list and the log",
			src: func() *fakeSource {
				return &fakeSource{
					runs: runs(testRun("e2e", v1alpha1.TestRunSucceeded, "e2e")),
					pods: map[string][]corev1.Pod{"e2e": {jobPod("e2e-x1", 0, terminated)}},
				}
			},
			run:      "e2e",
			wantErr:  []string{"the pod of TestRun default/e2e (Job e2e) is gone"},
			wantLogs: []string{"e2e-x1/test follow=false"},
		},
		{
			name: "never ran",
			src: func() *fakeSource {
				tr := testRun("e2e", v1alpha1.TestRunError, "", metav1.Condition{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonClusterError, Message: `ClusterPool "ci" not found`})
				return &fakeSource{runs: runs(tr)}
			},
			run:     "e2e",
			wantErr: []string{`TestRun default/e2e is Error and never ran a Job, so it has no log: ClusterPool "ci" not found`},
		},
		{
			name:    "not found",
			src:     func() *fakeSource { return &fakeSource{} },
			run:     "nope",
			wantErr: []string{`TestRun "nope" not found in namespace "default"`, "ephemera get testruns -n default"},
		},
		{
			name: "deleted while waiting",
			src: func() *fakeSource {
				return &fakeSource{
					runs:  runs(testRun("e2e", v1alpha1.TestRunPending, "")),
					steps: []func(*fakeSource){func(f *fakeSource) { delete(f.runs, "e2e") }},
				}
			},
			opts:       options{follow: true},
			run:        "e2e",
			wantErr:    []string{"TestRun default/e2e was deleted while waiting for its log"},
			wantErrOut: "Waiting: TestRun default/e2e is Pending, waiting for its cluster\n",
		},
		{
			name:    "--cell of a run without a matrix",
			src:     func() *fakeSource { return &fakeSource{runs: runs(testRun("e2e", v1alpha1.TestRunRunning, "e2e"))} },
			opts:    options{cell: "default/v1.35.4"},
			run:     "e2e",
			wantErr: []string{"--cell default/v1.35.4: TestRun default/e2e is not a matrix run, it has no cells"},
		},
		{
			name: "every cell of a matrix",
			src: func() *fakeSource {
				return &fakeSource{
					runs: runs(matrixRun(), testRun("compat-0", v1alpha1.TestRunFailed, "compat-0"), testRun("compat-1", v1alpha1.TestRunPending, "")),
					pods: map[string][]corev1.Pod{"compat-0": {jobPod("compat-0-x", 0, terminated)}},
					logs: map[string]string{"compat-0-x": "FAIL: TestB"}, // no newline at the end
				}
			},
			run: "compat",
			want: `==> cell default/v1.35.4 (run compat-0) <==
FAIL: TestB

==> cell default/v1.36.3 (run compat-1) <==
`,
			wantErr:  []string{"cell default/v1.36.3: TestRun default/compat-1 is Pending, waiting for its cluster; try again or use --follow"},
			wantLogs: []string{"compat-0-x/test follow=false"},
		},
		{
			name: "one cell, by name",
			src: func() *fakeSource {
				return &fakeSource{
					runs: runs(matrixRun(), testRun("compat-0", v1alpha1.TestRunFailed, "compat-0")),
					pods: map[string][]corev1.Pod{"compat-0": {jobPod("compat-0-x", 0, terminated)}},
					logs: map[string]string{"compat-0-x": "FAIL: TestB\n"},
				}
			},
			opts:     options{cell: "default/v1.35.4"},
			run:      "compat",
			want:     "FAIL: TestB\n",
			wantLogs: []string{"compat-0-x/test follow=false"},
		},
		{
			name: "one cell, by its run",
			src: func() *fakeSource {
				return &fakeSource{
					runs: runs(matrixRun(), testRun("compat-1", v1alpha1.TestRunRunning, "compat-1")),
					pods: map[string][]corev1.Pod{"compat-1": {jobPod("compat-1-x", 0, running)}},
					logs: map[string]string{"compat-1-x": "PASS\n"},
				}
			},
			opts:     options{cell: "compat-1", follow: true},
			run:      "compat",
			want:     "PASS\n",
			wantLogs: []string{"compat-1-x/test follow=true"},
		},
		{
			name:    "unknown cell",
			src:     func() *fakeSource { return &fakeSource{runs: runs(matrixRun())} },
			opts:    options{cell: "default/v1.34.0"},
			run:     "compat",
			wantErr: []string{`--cell default/v1.34.0: TestRun default/compat has no such cell; its cells are "default/v1.35.4", "default/v1.36.3"`},
		},
		{
			name: "a matrix without cells yet",
			src: func() *fakeSource {
				tr := matrixRun()
				tr.Status.Cells = nil
				return &fakeSource{runs: runs(tr)}
			},
			run:     "compat",
			wantErr: []string{"TestRun default/compat is a matrix run whose cells are not created yet; try again or use --follow"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.src()
			var out, errOut bytes.Buffer
			e := &env.Env{Out: &out, ErrOut: &errOut}
			opts := tt.opts
			opts.namespace = "default"
			err := run(context.Background(), e, &opts, tt.run, deps{src: f, wait: f.wait})
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("logs: %v", err)
			}
			if len(tt.wantErr) > 0 && err == nil {
				t.Fatalf("logs succeeded, want an error with %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if d := cmp.Diff(tt.want, out.String()); d != "" {
				t.Errorf("stdout mismatch (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantErrOut, errOut.String()); d != "" {
				t.Errorf("stderr mismatch (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantLogs, f.logCalls); d != "" {
				t.Errorf("Log calls mismatch (-want +got):\n%s", d)
			}
			if len(f.steps) > 0 {
				t.Errorf("%d steps left: the command stopped waiting too early", len(f.steps))
			}
		})
	}
}

func TestLogsCommandErrors(t *testing.T) {
	t.Setenv(env.ServerKubeconfigEnv, "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no name", args: nil, want: "name one TestRun, like: ephemera logs testrun NAME (got 0 names"},
		{name: "two names", args: []string{"a", "b"}, want: "got 2 names"},
		{name: "empty namespace", args: []string{"e2e", "-n", ""}, want: "--namespace must not be empty"},
		{name: "unknown flag", args: []string{"e2e", "--tail", "10"}, want: "unknown flag: --tail"},
		{name: "no server", args: []string{"e2e", "-f"}, want: "no ephemera server found"},
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
