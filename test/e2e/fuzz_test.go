package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	ephemeraserver "github.com/ephemera-dev/ephemera/internal/server"
)

// FuzzSpecs sends TestCluster, ClusterPool, ClusterTemplate and TestRun
// specs, valid and not, through a real server: its API server (CRD schemas,
// CEL rules) and its controllers, with --max-clusters 0 so that nothing is
// built. Each input is either refused with a clear message that names the
// field, or stored as a valid object that the controllers read, act on
// and let go of when it is deleted. After each, serve still runs, its log
// has no panic, and no cluster was built.
//
// `go test` runs the seed corpus (fuzzSeeds and testdata/fuzz/FuzzSpecs).
// To fuzz (docs/testing.md):
//
//	EPHEMERA_BIN=$PWD/bin/ephemera go test ./test/e2e -run '^$' -fuzz FuzzSpecs -fuzztime 5m
//
// The fuzzing coordinator starts the one server; its workers, other
// processes, use it through fuzzServerEnv.
func FuzzSpecs(f *testing.F) {
	fz := newFuzzServer(f)
	for _, s := range fuzzSeeds() {
		f.Add(s.kind, s.name, []byte(s.spec))
	}
	f.Fuzz(fz.check)
}

// fuzzServerEnv hands the coordinator's server to fuzzing workers.
const fuzzServerEnv = "EPHEMERA_FUZZ_SERVER"

// fuzzServerInfo is how a worker finds the server.
type fuzzServerInfo struct {
	StateDir, LogPath, MetricsAddr, HealthAddr string
	PID                                        int
}

// fuzzKind is a kind the fuzz target creates.
type fuzzKind struct {
	kind, plural string
	new          func() client.Object
}

var fuzzKinds = []fuzzKind{
	{"TestCluster", "testclusters", func() client.Object { return &v1alpha1.TestCluster{} }},
	{"ClusterPool", "clusterpools", func() client.Object { return &v1alpha1.ClusterPool{} }},
	{"ClusterTemplate", "clustertemplates", func() client.Object { return &v1alpha1.ClusterTemplate{} }},
	{"TestRun", "testruns", func() client.Object { return &v1alpha1.TestRun{} }},
}

// fuzzNamespaceLabel marks the namespaces of fuzz processes.
const fuzzNamespaceLabel = "ephemera.dev/fuzz"

type fuzzServer struct {
	h    *harness
	s    *server
	pid  int
	rest rest.Interface
	// ns is this process's namespace, with a template and a pool named
	// "fixture" for specs to refer to.
	ns string
}

// newFuzzServer starts serve with --max-clusters 0, or in a fuzzing
// worker uses the coordinator's.
func newFuzzServer(f *testing.F) *fuzzServer {
	fz := &fuzzServer{}
	if worker := flag.Lookup("test.fuzzworker"); worker != nil && worker.Value.String() == "true" {
		var info fuzzServerInfo
		if err := json.Unmarshal([]byte(os.Getenv(fuzzServerEnv)), &info); err != nil {
			f.Fatalf("a fuzzing worker needs the coordinator's server in %s: %v", fuzzServerEnv, err)
		}
		fz.h = &harness{t: f, stateDir: info.StateDir}
		fz.s = &server{h: fz.h, logPath: info.LogPath, metricsAddr: info.MetricsAddr, healthAddr: info.HealthAddr}
		fz.s.waitReady()
		fz.pid = info.PID
	} else {
		fz.h = newHarness(f)
		fz.s = fz.h.startServer("--max-clusters", "0", "--runner-node=false")
		fz.pid = fz.s.cmd.Process.Pid
		info, _ := json.Marshal(fuzzServerInfo{StateDir: fz.h.stateDir, LogPath: fz.s.logPath,
			MetricsAddr: fz.s.metricsAddr, HealthAddr: fz.s.healthAddr, PID: fz.pid})
		f.Setenv(fuzzServerEnv, string(info))
		// Before the server's own cleanup (cleanups run last first).
		f.Cleanup(func() { fz.deleteAll(f) })
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", ephemeraserver.NewLayout(fz.h.stateDir).Kubeconfig())
	if err != nil {
		f.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.APIPath, cfg.GroupVersion = "/apis", &v1alpha1.GroupVersion
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	if fz.rest, err = rest.RESTClientFor(cfg); err != nil {
		f.Fatal(err)
	}

	ctx := f.Context()
	fz.ns = fmt.Sprintf("fuzz-%d", os.Getpid())
	tmpl, pl := template("fixture", 1), pool("fixture", "fixture", 1, 2)
	tmpl.Namespace, pl.Namespace = fz.ns, fz.ns
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fz.ns, Labels: map[string]string{fuzzNamespaceLabel: "true"}}},
		tmpl, pl,
	} {
		if err := fz.s.client.Create(ctx, obj); err != nil {
			f.Fatal(err)
		}
	}
	return fz
}

// deleteAll deletes what the fuzz processes left in their namespaces (a
// worker stopped in the middle of an input leaves its objects), so that
// the server's cleanup finds only its own.
func (fz *fuzzServer) deleteAll(f *testing.F) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := fz.s.client
	var nss corev1.NamespaceList
	if err := c.List(ctx, &nss, client.HasLabels{fuzzNamespaceLabel}); err != nil {
		f.Errorf("cleanup: %v", err)
		return
	}
	for _, ns := range nss.Items {
		for _, k := range fuzzKinds {
			if err := c.DeleteAllOf(ctx, k.new(), client.InNamespace(ns.Name)); err != nil {
				f.Errorf("cleanup: delete %ss in %s: %v", k.kind, ns.Name, err)
			}
		}
		if err := c.Delete(ctx, &ns); err != nil {
			f.Errorf("cleanup: %v", err)
		}
	}
}

// check runs one input: kind's low two bits pick the kind, bit 2 asks for
// strict field validation; spec is the spec's JSON, or bytes for
// generateSpec when it is not JSON.
func (fz *fuzzServer) check(t *testing.T, kind uint8, name string, spec []byte) {
	k := fuzzKinds[int(kind)%len(fuzzKinds)]
	if name == "" {
		name = "fz"
	}
	if name == "fixture" && (k.kind == "ClusterTemplate" || k.kind == "ClusterPool") {
		name = "fixture-2"
	}
	if !json.Valid(spec) {
		spec = generateSpec(k.kind, spec)
	}
	nameJSON, _ := json.Marshal(name)
	body := fmt.Sprintf(`{"apiVersion":%q,"kind":%q,"metadata":{"name":%s},"spec":%s}`,
		v1alpha1.GroupVersion.String(), k.kind, nameJSON, spec)
	t.Logf("%s: %s", k.kind, body)

	logStart, errorsBefore, start := fz.logSize(), fz.s.metric("controller_runtime_reconcile_errors_total", ""), time.Now()
	defer fz.checkServer(t, logStart)
	defer func() {
		// An error is retried with backoff, for ever: the input should
		// have been refused, or the controllers should record why they
		// cannot act on it.
		errs := fz.s.metric("controller_runtime_reconcile_errors_total", "") - errorsBefore
		t.Logf("%s, %v reconcile errors", time.Since(start).Round(time.Millisecond), errs)
		if errs != 0 {
			var lines []string
			for _, l := range strings.Split(string(fz.logSince(logStart)), "\n") {
				if strings.Contains(l, "Reconciler error") {
					lines = append(lines, l)
				}
			}
			t.Errorf("the controllers failed %v reconciles:\n%s", errs, tail(strings.Join(lines, "\n"), 4000))
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req := fz.rest.Post().Namespace(fz.ns).Resource(k.plural).SetHeader("Content-Type", "application/json").Body([]byte(body))
	if kind&seedStrict != 0 {
		req = req.Param("fieldValidation", "Strict")
	}
	raw, err := req.Do(ctx).Raw()
	if err != nil {
		checkRefusal(t, raw, err)
		return
	}
	var created struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &created); err != nil || created.Metadata.Name == "" {
		t.Fatalf("the API answered the create with %q (%v)", raw, err)
	}
	obj := k.new()
	key := client.ObjectKey{Namespace: fz.ns, Name: created.Metadata.Name}
	defer fz.remove(t, k, key)
	// The controllers' cache decodes objects as this client does: one it
	// cannot read stops the controller of its kind.
	if err := fz.s.client.Get(ctx, key, obj); err != nil {
		t.Fatalf("%s %q was stored, but it cannot be read as a %s: %v", k.kind, name, k.kind, err)
	}
	if problem := invalid(obj); problem != "" {
		t.Errorf("%s %q was stored, but %s", k.kind, name, problem)
	}
	fz.waitObserved(ctx, t, k, obj)
}

// clearMessage says whether a refusal's message names what is wrong.
var clearMessage = regexp.MustCompile(`spec|metadata|name|field|\bat most\b|must`)

// checkRefusal fails the test unless the answer (body, err) to a create
// is a clear refusal of the input: Invalid (422), naming the field of each
// cause, or BadRequest (400) with a message.
func checkRefusal(t *testing.T, body []byte, err error) {
	t.Helper()
	var st metav1.Status
	if jerr := json.Unmarshal(body, &st); jerr != nil || st.Kind != "Status" {
		t.Fatalf("the create failed without an API status: %v\n%s", err, body)
	}
	lower := strings.ToLower(st.Message)
	switch {
	case st.Code != 422 && st.Code != 400:
		t.Errorf("the API answered %d %s (%q); want the object stored, or refused as Invalid (422) or BadRequest (400)", st.Code, st.Reason, st.Message)
	case !clearMessage.MatchString(st.Message):
		t.Errorf("the refusal does not say what is wrong: %q", st.Message)
	case strings.Contains(lower, "internal error") || strings.Contains(lower, "cost") || strings.Contains(lower, "no such key"):
		t.Errorf("the refusal is an error of the validation, not of the input: %q", st.Message)
	case st.Code == 422 && (st.Details == nil || len(st.Details.Causes) == 0):
		t.Errorf("the refusal has no causes: %q", st.Message)
	}
	if st.Code == 422 && st.Details != nil {
		for _, c := range st.Details.Causes {
			if c.Field == "" && !clearMessage.MatchString(c.Message) {
				t.Errorf("a cause of the refusal names no field: %+v", c)
			}
		}
	}
}

// invalid says what is wrong with a stored object that the API should
// have refused, by the rules the controllers rely on (api/v1alpha1).
func invalid(obj client.Object) string {
	var problems []string
	bad := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	atLeast1s := func(d *metav1.Duration) bool { return d == nil || d.Duration >= time.Second }
	switch o := obj.(type) {
	case *v1alpha1.TestCluster:
		s := o.Spec
		bad(len(o.Name) <= 63, "its name is longer than 63 characters")
		bad(s.ClusterName == "", "spec.clusterName %q was set on create: only the server binds", s.ClusterName)
		bad((s.PoolRef == "") != (s.TemplateRef == ""), "it has not exactly one of spec.poolRef, spec.templateRef")
		bad(s.KubernetesVersion == "" || s.TemplateRef != "", "spec.kubernetesVersion is set without spec.templateRef")
		bad(atLeast1s(s.TTL) && atLeast1s(s.MaxLifetime), "spec.ttl or spec.maxLifetime is under 1s")
		bad(slices.Contains([]v1alpha1.Priority{"", v1alpha1.PriorityHigh, v1alpha1.PriorityNormal, v1alpha1.PriorityLow}, s.Priority), "spec.priority is %q", s.Priority)
	case *v1alpha1.ClusterPool:
		s := o.Spec
		bad(len(o.Name) <= 63, "its name is longer than 63 characters")
		bad(s.TemplateRef != "", "spec.templateRef is empty")
		bad(s.MinReadyOrDefault() >= 0 && s.MinReadyOrDefault() <= 100, "spec.minReady is %d", s.MinReadyOrDefault())
		bad(s.MaxSizeOrDefault() >= 1 && s.MaxSizeOrDefault() <= 1000, "spec.maxSize is %d", s.MaxSizeOrDefault())
		bad(s.MaxSizeOrDefault() >= s.MinReadyOrDefault(), "spec.maxSize is below spec.minReady")
	case *v1alpha1.ClusterTemplate:
		s := o.Spec
		bad(s.Nodes.Real == nil || *s.Nodes.Real >= 0 && *s.Nodes.Real <= 1, "spec.nodes.real is %d", s.Nodes.Real)
		bad(s.Nodes.Simulated == nil || *s.Nodes.Simulated >= 0 && *s.Nodes.Simulated <= 1000, "spec.nodes.simulated is %d", s.Nodes.Simulated)
		bad(s.Provider == "" || s.Provider == v1alpha1.ProviderLocal, "spec.provider is %q", s.Provider)
	case *v1alpha1.TestRun:
		s := o.Spec
		c := s.Cluster
		limit := 50
		if s.Matrix != nil {
			limit = 46
		}
		bad(len(o.Name) <= limit, "its name is longer than %d characters", limit)
		bad(s.Runner.Image != "", "spec.runner.image is empty")
		bad(atLeast1s(s.Timeout) && atLeast1s(s.HoldFor), "spec.timeout or spec.holdFor is under 1s")
		if s.Matrix != nil && len(s.Matrix.Templates) > 0 {
			bad(!slices.Contains(s.Matrix.Templates, ""), "spec.matrix.templates has an empty name")
			bad(c.TemplateRef == "" && c.PoolRef == "" && c.TestClusterRef == "", "spec.matrix.templates comes with another cluster source")
		} else {
			n := 0
			for _, ref := range []string{c.PoolRef, c.TemplateRef, c.TestClusterRef} {
				if ref != "" {
					n++
				}
			}
			bad(n == 1, "it names %d cluster sources, not one (poolRef %q, templateRef %q, testClusterRef %q)", n, c.PoolRef, c.TemplateRef, c.TestClusterRef)
			bad(s.Matrix == nil || c.PoolRef == "" && c.TestClusterRef == "", "a matrix comes with spec.cluster.poolRef or testClusterRef")
		}
	}
	return strings.Join(problems, "; ")
}

// waitObserved waits until the controllers have acted on a stored object:
// written its status. Nothing may be built: a TestCluster never gets past
// Queued or Failed.
func (fz *fuzzServer) waitObserved(ctx context.Context, t *testing.T, k fuzzKind, obj client.Object) {
	t.Helper()
	if k.kind == "ClusterTemplate" {
		return // no status; a TestCluster or pool reads it
	}
	start := time.Now()
	defer func() { t.Logf("observed in %s", time.Since(start).Round(time.Millisecond)) }()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := waitFor(ctx, func() (bool, string) {
		if err := fz.s.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, err.Error()
		}
		switch o := obj.(type) {
		case *v1alpha1.TestCluster:
			return o.Status.Phase != "", fmt.Sprintf("status %+v", o.Status)
		case *v1alpha1.ClusterPool:
			return o.Status.ObservedGeneration == o.Generation, fmt.Sprintf("status %+v", o.Status)
		case *v1alpha1.TestRun:
			return o.Status.Phase != "" && o.Status.ObservedGeneration == o.Generation, fmt.Sprintf("status %+v", o.Status)
		}
		return true, ""
	}); err != nil {
		t.Fatalf("the controllers did not act on %s %q: %v", k.kind, obj.GetName(), err)
	}
	if tc, ok := obj.(*v1alpha1.TestCluster); ok && tc.Status.Phase != v1alpha1.TestClusterQueued && tc.Status.Phase != v1alpha1.TestClusterFailed {
		t.Errorf("TestCluster %q is %s with --max-clusters 0: %+v", tc.Name, tc.Status.Phase, tc.Status.Conditions)
	}
}

// remove deletes a stored object and everything the controllers made for
// it in the namespace, and waits until they have let go of all of it
// (their finalizers).
func (fz *fuzzServer) remove(t *testing.T, k fuzzKind, key client.ObjectKey) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	obj := k.new()
	obj.SetNamespace(key.Namespace)
	obj.SetName(key.Name)
	if err := fz.s.client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete %s %q: %v", k.kind, key.Name, err)
		return
	}
	start, logged := time.Now(), time.Now()
	if err := waitFor(ctx, func() (bool, string) {
		left, err := fz.deleteAllBut(ctx, "fixture")
		if time.Since(logged) > 2*time.Second {
			t.Logf("after %s, still there: %v", time.Since(start).Round(time.Millisecond), left)
			logged = time.Now()
		}
		return err == nil && len(left) == 0, fmt.Sprintf("still there: %v (%v)", left, err)
	}); err != nil {
		t.Errorf("deleting %s %q: %v", k.kind, key.Name, err)
	}
}

// deleteAllBut deletes every object of the fuzz kinds in the namespace
// but those named keep, and returns those left, with their finalizers.
func (fz *fuzzServer) deleteAllBut(ctx context.Context, keep string) ([]string, error) {
	var left []string
	lists := []client.ObjectList{&v1alpha1.TestRunList{}, &v1alpha1.TestClusterList{}, &v1alpha1.ClusterPoolList{}, &v1alpha1.ClusterTemplateList{}}
	for _, list := range lists {
		if err := fz.s.client.List(ctx, list, client.InNamespace(fz.ns)); err != nil {
			return nil, err
		}
		err := meta.EachListItem(list, func(o runtime.Object) error {
			obj := o.(client.Object)
			if obj.GetName() == keep {
				return nil
			}
			left = append(left, fmt.Sprintf("%T %s %v", obj, obj.GetName(), obj.GetFinalizers()))
			if obj.GetDeletionTimestamp() == nil {
				return client.IgnoreNotFound(fz.s.client.Delete(ctx, obj))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return left, nil
}

// panicked matches a panic or a goroutine dump in serve's log.
var panicked = regexp.MustCompile(`(?i)panic|goroutine \d+ \[`)

// checkServer fails the test if serve died, logged a panic since
// logStart, or built a cluster.
func (fz *fuzzServer) checkServer(t *testing.T, logStart int64) {
	t.Helper()
	if err := syscall.Kill(fz.pid, 0); err != nil || isZombie(fz.pid) {
		t.Fatalf("serve (pid %d) died:\n%s", fz.pid, tail(fz.s.log(), 8000))
	}
	resp, err := http.Get("http://" + fz.s.healthAddr + "/healthz")
	if err != nil {
		t.Fatalf("serve's /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("serve's /healthz answered %s", resp.Status)
	}
	if lines := fz.logSince(logStart); panicked.Match(lines) {
		t.Fatalf("serve logged a panic:\n%s", tail(string(lines), 8000))
	}
	if entries, _ := os.ReadDir(filepath.Join(fz.h.stateDir, "clusters")); len(entries) > 0 {
		t.Fatalf("a cluster was built with --max-clusters 0: %s", entries[0].Name())
	}
}

func (fz *fuzzServer) logSize() int64 {
	st, err := os.Stat(fz.s.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

func (fz *fuzzServer) logSince(offset int64) []byte {
	f, err := os.Open(fz.s.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	return bytes.TrimSpace(b)
}
