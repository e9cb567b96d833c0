package lease

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/progress"
)

func TestWaitError(t *testing.T) {
	tc := &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ci-abcde"},
		Spec:       v1alpha1.TestClusterSpec{PoolRef: "ci"},
	}
	err := waitError(context.Background(), tc, 10*time.Minute)
	for _, w := range []string{"TestCluster default/ci-abcde is not Ready after 10m0s", "still Requesting a cluster from pool ci", "is 'ephemera serve' running?", "It is kept", "ephemera delete testcluster ci-abcde -n default"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tc.Status = v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued, QueuePosition: 4}
	err = waitError(ctx, tc, time.Minute)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted, still Queued: position 4 in pool ci. It is kept") || strings.Contains(err.Error(), "ephemera serve") {
		t.Errorf("interrupted error = %q", err)
	}
}

func TestObserveWithoutRequests(t *testing.T) {
	cond := func(reason, msg string) []metav1.Condition {
		return []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg}}
	}
	tests := []struct {
		name    string
		status  v1alpha1.TestClusterStatus
		wantErr string // empty: keep waiting
	}{
		{name: "no status yet"},
		{name: "queued", status: v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued, QueuePosition: 2, Conditions: cond(v1alpha1.ReasonQueued, "waiting")}},
		{name: "provisioning", status: v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterProvisioning}},
		{
			name:    "failed",
			status:  v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterFailed, Conditions: cond(v1alpha1.ReasonProvisionFailed, `creating cluster "x" failed: no space`)},
			wantErr: `TestCluster default/e2e failed: creating cluster "x" failed: no space; delete it with 'ephemera delete testcluster e2e -n default'`,
		},
		{
			name:    "failed without a message",
			status:  v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterFailed},
			wantErr: "TestCluster default/e2e failed: no reason given;",
		},
		{
			name:    "lease ended",
			status:  v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterDeleting, Conditions: cond(v1alpha1.ReasonLeaseExpired, "the lease ended at 2026-03-01T12:00:00Z")},
			wantErr: "TestCluster default/e2e is being deleted before it was Ready: the lease ended at 2026-03-01T12:00:00Z",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "e2e"}, Spec: v1alpha1.TestClusterSpec{TemplateRef: "big"}, Status: tt.status}
			w := &waiter{tc: tc} // no client: these states need no request
			kc, err := w.observe(context.Background())
			if kc != nil {
				t.Errorf("kubeconfig = %q, want none", kc)
			}
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tt.wantErr == "" && got != "" || !strings.Contains(got, tt.wantErr) {
				t.Errorf("observe error = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

// opened is a watch WaitReady opened: its options, and the fake watcher
// the test drives.
type opened struct {
	opts *client.ListOptions
	w    *watch.FakeWatcher
}

// watchClient returns a fake client (named so: unit tests; the real API
// server is in test/e2e) holding objs, whose watches the test drives:
// each Watch call is sent on the returned channel, or fails with
// watchErr when set.
func watchClient(t *testing.T, watchErr error, objs ...client.Object) (client.WithWatch, <-chan opened) {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	fakeClient := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
	ch := make(chan opened, 10)
	return interceptor.NewClient(fakeClient, interceptor.Funcs{
		Watch: func(_ context.Context, _ client.WithWatch, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
			if _, ok := list.(*v1alpha1.TestClusterList); !ok {
				t.Errorf("watch of %T, want a TestClusterList", list)
			}
			if watchErr != nil {
				return nil, watchErr
			}
			o := opened{opts: (&client.ListOptions{}).ApplyOptions(opts), w: watch.NewFakeWithChanSize(10, false)}
			ch <- o
			return o.w, nil
		},
	}), ch
}

func nextWatch(t *testing.T, ch <-chan opened) opened {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no watch opened")
	}
	return opened{}
}

// wantWatch checks that a watch is on the one TestCluster default/e2e from
// resourceVersion rv.
func wantWatch(t *testing.T, o opened, rv string) {
	t.Helper()
	raw := o.opts.AsListOptions()
	got := []string{o.opts.Namespace, raw.FieldSelector, raw.ResourceVersion, strconv.FormatBool(raw.AllowWatchBookmarks)}
	if d := cmp.Diff([]string{"default", "metadata.name=e2e", rv, "true"}, got); d != "" {
		t.Errorf("watch namespace, field selector, resourceVersion, bookmarks mismatch (-want +got):\n%s", d)
	}
}

func testCluster(rv string, status v1alpha1.TestClusterStatus) *v1alpha1.TestCluster {
	return &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "e2e", ResourceVersion: rv},
		Spec:       v1alpha1.TestClusterSpec{PoolRef: "ci"},
		Status:     status,
	}
}

func kubeconfigSecret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "e2e-kubeconfig"},
		Data:       map[string][]byte{KubeconfigKey: []byte("the kubeconfig")},
	}
}

type waitResult struct {
	kubeconfig []byte
	err        error
}

func startWait(c client.WithWatch, tc *v1alpha1.TestCluster, timeout time.Duration, out *syncBuffer) <-chan waitResult {
	done := make(chan waitResult, 1)
	go func() {
		kc, err := WaitReady(context.Background(), c, tc, timeout, progress.New(out, false))
		done <- waitResult{kc, err}
	}()
	return done
}

func result(t *testing.T, done <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("WaitReady did not return")
	}
	return waitResult{}
}

func TestWaitReadyFollowsTheWatch(t *testing.T) {
	tc := testCluster("", v1alpha1.TestClusterStatus{})
	c, watches := watchClient(t, nil, tc, kubeconfigSecret())
	created := tc.DeepCopy() // as Create returned it: with its resourceVersion
	var out syncBuffer
	done := startWait(c, created, time.Minute, &out)

	// The first watch goes on from the created object: no Get.
	w := nextWatch(t, watches)
	wantWatch(t, w, tc.ResourceVersion)
	other := testCluster("5", v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterReady, KubeconfigSecret: "e2e-kubeconfig"})
	other.Name = "other"
	w.w.Modify(other) // not ours: a watch may ignore the field selector
	w.w.Modify(testCluster("6", v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued, QueuePosition: 2}))
	w.w.Stop() // the server ends the watch

	// Reopened from the last resourceVersion seen.
	w = nextWatch(t, watches)
	wantWatch(t, w, "6")
	w.w.Action(watch.Bookmark, testCluster("9", v1alpha1.TestClusterStatus{}))
	w.w.Stop()
	w = nextWatch(t, watches)
	wantWatch(t, w, "9")

	// Too old to go on from: the object is read again, and watched from
	// there.
	stored := &v1alpha1.TestCluster{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(tc), stored); err != nil {
		t.Fatal(err)
	}
	stored.Status = v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterProvisioning}
	stored.Spec.ClusterName = "ci-x1y2z"
	if err := c.Update(context.Background(), stored); err != nil {
		t.Fatal(err)
	}
	w.w.Error(&apierrors.NewResourceExpired("too old resource version: 9 (12)").ErrStatus)
	w = nextWatch(t, watches)
	wantWatch(t, w, stored.ResourceVersion)

	ready := testCluster("20", v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterReady, KubeconfigSecret: "e2e-kubeconfig"})
	ready.Spec.ClusterName = "ci-x1y2z"
	w.w.Modify(ready)
	r := result(t, done)
	if r.err != nil || string(r.kubeconfig) != "the kubeconfig" {
		t.Fatalf("WaitReady = %q, %v; want the kubeconfig", r.kubeconfig, r.err)
	}
	if d := cmp.Diff(ready, created); d != "" {
		t.Errorf("tc not updated to the last state (-want +got):\n%s", d)
	}
	for _, want := range []string{
		" • Requesting a cluster from pool ci\n",
		" • Queued: position 2 in pool ci\n",
		" • Provisioning cluster ci-x1y2z from pool ci\n",
		" • Fetching the kubeconfig of cluster ci-x1y2z\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress does not show %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "other") {
		t.Errorf("progress shows another TestCluster:\n%s", out.String())
	}
}

func TestWaitReadyWithoutResourceVersionReadsFirst(t *testing.T) {
	tc := testCluster("", v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued, QueuePosition: 3})
	c, watches := watchClient(t, nil, tc)
	var out syncBuffer
	done := startWait(c, testCluster("", v1alpha1.TestClusterStatus{}), time.Minute, &out)
	w := nextWatch(t, watches)
	wantWatch(t, w, tc.ResourceVersion)
	w.w.Delete(tc)
	r := result(t, done)
	if r.err == nil || r.err.Error() != "TestCluster default/e2e was deleted while waiting for it to be Ready" {
		t.Errorf("WaitReady error = %v, want that it was deleted", r.err)
	}
	if !strings.Contains(out.String(), "Queued: position 3 in pool ci") {
		t.Errorf("progress does not show the state read:\n%s", out.String())
	}
}

func TestWaitReadyRereadsALateSecret(t *testing.T) {
	tc := testCluster("", v1alpha1.TestClusterStatus{})
	c, watches := watchClient(t, nil, tc)
	var out syncBuffer
	done := startWait(c, tc.DeepCopy(), time.Minute, &out)
	w := nextWatch(t, watches)
	w.w.Modify(testCluster("7", v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterReady, KubeconfigSecret: "e2e-kubeconfig"}))
	time.Sleep(20 * time.Millisecond) // a few reads find no Secret
	if err := c.Create(context.Background(), kubeconfigSecret()); err != nil {
		t.Fatal(err)
	}
	// No event comes: the Secret is read again on its own.
	r := result(t, done)
	if r.err != nil || string(r.kubeconfig) != "the kubeconfig" {
		t.Fatalf("WaitReady = %q, %v; want the kubeconfig", r.kubeconfig, r.err)
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	tc := testCluster("", v1alpha1.TestClusterStatus{})
	c, watches := watchClient(t, nil, tc)
	var out syncBuffer
	done := startWait(c, tc.DeepCopy(), 300*time.Millisecond, &out)
	w := nextWatch(t, watches)
	w.w.Modify(testCluster("7", v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterQueued, QueuePosition: 4}))
	r := result(t, done)
	want := "TestCluster default/e2e is not Ready after 300ms, still Queued: position 4 in pool ci. It is kept"
	if r.err == nil || !strings.Contains(r.err.Error(), want) {
		t.Errorf("WaitReady error = %v, want %q", r.err, want)
	}
	if !w.w.IsStopped() {
		t.Error("the watch was not stopped")
	}
}

func TestWaitReadyWatchRefused(t *testing.T) {
	tc := testCluster("", v1alpha1.TestClusterStatus{})
	c, _ := watchClient(t, apierrors.NewForbidden(v1alpha1.GroupVersion.WithResource("testclusters").GroupResource(), "", errors.New("no")), tc)
	var out syncBuffer
	r := result(t, startWait(c, tc.DeepCopy(), time.Minute, &out))
	if r.err == nil || !strings.Contains(r.err.Error(), "watch TestCluster default/e2e: testclusters.ephemera.dev is forbidden") {
		t.Errorf("WaitReady error = %v, want the refused watch", r.err)
	}
}

// TestWaitReadyWithTheFakeClientsWatch runs WaitReady on the fake client's
// own watch, which sends every change in the namespace.
func TestWaitReadyWithTheFakeClientsWatch(t *testing.T) {
	s := runtime.NewScheme()
	_ = v1alpha1.AddToScheme(s)
	_ = corev1.AddToScheme(s)
	tc := testCluster("", v1alpha1.TestClusterStatus{})
	other := testCluster("", v1alpha1.TestClusterStatus{})
	other.Name = "other"
	fakeClient := fake.NewClientBuilder().WithScheme(s).WithObjects(tc, other, kubeconfigSecret()).Build()
	watching := make(chan struct{})
	c := interceptor.NewClient(fakeClient, interceptor.Funcs{
		Watch: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
			defer close(watching)
			return c.Watch(ctx, list, opts...)
		},
	})
	var out syncBuffer
	done := startWait(c, tc.DeepCopy(), time.Minute, &out)
	<-watching
	ctx := context.Background()
	for _, obj := range []*v1alpha1.TestCluster{other, tc} {
		obj.Status = v1alpha1.TestClusterStatus{Phase: v1alpha1.TestClusterReady, KubeconfigSecret: "e2e-kubeconfig"}
		if obj == other {
			obj.Status.KubeconfigSecret = "missing"
		}
		if err := fakeClient.Update(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	r := result(t, done)
	if r.err != nil || string(r.kubeconfig) != "the kubeconfig" {
		t.Fatalf("WaitReady = %q, %v; want the kubeconfig", r.kubeconfig, r.err)
	}
}

// syncBuffer is a bytes.Buffer safe for the waiting goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
