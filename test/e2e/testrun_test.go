package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/controller/testrun"
	"github.com/ephemera-dev/ephemera/internal/runner"
	ephemeraserver "github.com/ephemera-dev/ephemera/internal/server"
	"github.com/ephemera-dev/ephemera/test/testhost"
)

// smokeImage is examples/smoke, the example runner image.
const smokeImage = "example.com/smoke:v1"

// smoke is examples/smoke, the example runner image.
var smoke = &exampleImage{pkg: "smoke", tag: smokeImage}

// forgeCall is one commit-status request a fake forge received.
type forgeCall struct {
	Method, Path, Auth string
	Body               map[string]any
}

// fakeForge is a FAKE of GitHub's and GitLab's commit status APIs (no
// forge is reachable from here): a local HTTP server that records what it
// is sent and answers 201 like the real ones.
type fakeForge struct {
	*httptest.Server
	mu    sync.Mutex
	calls []forgeCall
}

func newFakeForge(t *testing.T) *fakeForge {
	f := &fakeForge{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		call := forgeCall{Method: r.Method, Path: r.URL.EscapedPath(), Auth: r.Header.Get("Authorization")}
		if tok := r.Header.Get("PRIVATE-TOKEN"); tok != "" {
			call.Auth = "PRIVATE-TOKEN " + tok
		}
		_ = json.Unmarshal(body, &call.Body)
		f.mu.Lock()
		f.calls = append(f.calls, call)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id": 1}`))
	}))
	t.Cleanup(f.Close)
	return f
}

// states lists the states posted, in order, with the field name the forge
// uses.
func (f *fakeForge) states(field string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		s, _ := c.Body[field].(string)
		out = append(out, s)
	}
	return out
}

func (f *fakeForge) all() []forgeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

const testSHA = "0123456789abcdef0123456789abcdef01234567"

func testRun(name string, args ...string) *v1alpha1.TestRun {
	return &v1alpha1.TestRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1alpha1.TestRunSpec{
			Cluster: v1alpha1.TestRunCluster{TemplateRef: "sim"},
			Runner:  v1alpha1.TestRunner{Image: smokeImage, Command: append([]string{"/smoke"}, args...)},
		},
	}
}

// waitRun waits until a TestRun is complete and returns it.
func (s *server) waitRun(ctx context.Context, t *testing.T, name string) *v1alpha1.TestRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	run := &v1alpha1.TestRun{}
	if err := waitFor(ctx, func() (bool, string) {
		if err := s.client.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, run); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(run.Status.Conditions, v1alpha1.ConditionComplete)
		return c != nil && c.Status == metav1.ConditionTrue && run.Status.Phase != "", fmt.Sprintf("%s: %s %+v", name, run.Status.Phase, run.Status.Conditions)
	}); err != nil {
		t.Fatalf("TestRun %s did not complete: %v", name, err)
	}
	return run
}

func completeReason(run *v1alpha1.TestRun) string {
	if c := meta.FindStatusCondition(run.Status.Conditions, v1alpha1.ConditionComplete); c != nil {
		return c.Reason + ": " + c.Message
	}
	return ""
}

// TestTestRuns runs TestRuns as Jobs on the embedded management plane's
// real node, against real clusters: a pass, a failure that holds its
// cluster, a two-version matrix, a timeout, a missing image, bad specs,
// and the commit statuses sent to fake forges.
func TestTestRuns(t *testing.T) {
	h := newHarness(t)
	// The metrics address is off loopback (on every address; the test
	// only dials 127.0.0.1), so /metrics and the artefacts check who asks,
	// over TLS with a certificate of ours.
	port := portOf(t, freeAddr(t))
	certDir, pool := servingCert(t)
	// The server advertises an address (the host's side of a test host's
	// link): the clusters' kubeconfigs name it, so the runners reach their
	// clusters through the gateway, then the SNI router.
	runners := testhost.New(t, "runners")
	adv := netip.AddrPortFrom(runners.HostSideAddr(), freeTCPPort(t, runners.HostSideAddr()))
	s := h.startServer("--max-clusters", "8", "--metrics-bind-address", "0.0.0.0:"+port,
		"--metrics-cert-dir", certDir, "--external-url", "https://127.0.0.1:"+port, "--advertise-address", adv.String())
	s.metricsAddr = "127.0.0.1:" + port
	if kc, err := clientcmd.LoadFromFile(ephemeraserver.NewLayout(h.stateDir).Kubeconfig()); err != nil {
		t.Fatal(err)
	} else if c := kc.Clusters[kc.Contexts[kc.CurrentContext].Cluster]; c.Server != "https://"+adv.String() {
		t.Fatalf("the server's kubeconfig names %s, want the advertised https://%s", c.Server, adv)
	}
	web := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx := t.Context()
	c := s.client
	t.Cleanup(func() {
		// Runs first, so their clusters go before the server's cleanup.
		_ = c.DeleteAllOf(context.Background(), &v1alpha1.TestRun{}, client.InNamespace("default"))
	})
	load := h.must("load", "image", smoke.archiveFor(t), "--server")
	if !strings.Contains(load.stdout, smokeImage) {
		t.Fatalf("load image --server did not report %s:\n%s", smokeImage, load)
	}
	if err := c.Create(ctx, template("sim", 1)); err != nil {
		t.Fatal(err)
	}
	github, gitlab := newFakeForge(t), newFakeForge(t)
	const token = "t0ken-never-shown"
	if err := c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "forge", Namespace: "default"},
		StringData: map[string]string{"token": token},
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("bad specs are refused with clear messages", func(t *testing.T) {
		both := testRun("both")
		both.Spec.Cluster.PoolRef = "ci"
		matrixPool := testRun("matrix-pool")
		matrixPool.Spec.Cluster = v1alpha1.TestRunCluster{PoolRef: "ci"}
		matrixPool.Spec.Matrix = &v1alpha1.TestRunMatrix{KubernetesVersions: []string{newVersion}}
		long := testRun(strings.Repeat("a", 51))
		noImage := testRun("no-image")
		noImage.Spec.Runner.Image = ""
		badSHA := testRun("bad-sha")
		badSHA.Spec.Report = &v1alpha1.TestRunReport{GitHub: &v1alpha1.CommitStatusTarget{Repo: "acme/app", SHA: "main", TokenSecretRef: v1alpha1.SecretKeySelector{Name: "forge"}}}
		poolVersion := testRun("pool-version")
		poolVersion.Spec.Cluster = v1alpha1.TestRunCluster{PoolRef: "ci", KubernetesVersion: oldVersion}
		badVersion := testRun("bad-version")
		badVersion.Spec.Matrix = &v1alpha1.TestRunMatrix{KubernetesVersions: []string{"1.35"}}
		for _, tc := range []struct {
			run  *v1alpha1.TestRun
			want string
		}{
			{both, "set exactly one of spec.cluster.poolRef"},
			{matrixPool, "a matrix builds one cluster per cell from templates"},
			{long, "at most 50 characters"},
			{noImage, "spec.runner.image"},
			{badSHA, "spec.report.github.sha"},
			{badVersion, "spec.matrix.kubernetesVersions[0]"},
			{poolVersion, "use it with spec.cluster.templateRef"},
		} {
			err := c.Create(ctx, tc.run)
			if err == nil {
				t.Errorf("TestRun %s was accepted", tc.run.Name)
				continue
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("TestRun %s: got %v, want an Invalid error mentioning %q", tc.run.Name, err, tc.want)
			}
		}
		// A spec cannot change under a run.
		ok := testRun("immutable")
		if err := c.Create(ctx, ok); err != nil {
			t.Fatal(err)
		}
		change := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"runner":{"image":"example.com/other:v1"}}}`))
		if err := c.Patch(ctx, ok, change); err == nil || !strings.Contains(err.Error(), "spec cannot change") {
			t.Errorf("changing a TestRun's spec: got %v, want refused", err)
		}
		_ = c.Delete(ctx, ok)
	})

	// The next runs go at once; the server runs them side by side.
	// The passing run also checks that it resolves cluster names (the
	// management plane's CoreDNS) and that it cannot reach the management
	// plane's etcd: neither on its node's loopback, which a runner on the
	// node's network (hostNetwork) would share, nor on the node's address.
	mgmt := managementNode(t, h)
	checks := []string{"--resolve", "kubernetes.default.svc.cluster.local"}
	for _, host := range []string{"127.0.0.1", mgmt.NodeIP} {
		for _, port := range []int{mgmt.EtcdClient, mgmt.EtcdPeer} {
			checks = append(checks, "--unreachable", net.JoinHostPort(host, strconv.Itoa(port)))
		}
	}
	pass := testRun("pass", checks...)
	pass.Spec.Report = &v1alpha1.TestRunReport{GitHub: &v1alpha1.CommitStatusTarget{
		Repo: "acme/charts", SHA: testSHA, URL: github.URL + "/api/v3/", TokenSecretRef: v1alpha1.SecretKeySelector{Name: "forge"},
	}}
	fail := testRun("fail", "--fail")
	fail.Spec.OnFailure = v1alpha1.FailureHold
	fail.Spec.HoldFor = &metav1.Duration{Duration: 20 * time.Second}
	fail.Spec.Report = &v1alpha1.TestRunReport{GitLab: &v1alpha1.CommitStatusTarget{
		Repo: "acme/platform/charts", SHA: testSHA, Context: "e2e", URL: gitlab.URL, TokenSecretRef: v1alpha1.SecretKeySelector{Name: "forge"},
	}}
	matrix := testRun("matrix")
	matrix.Spec.Matrix = &v1alpha1.TestRunMatrix{KubernetesVersions: []string{oldVersion, newVersion}}
	slow := testRun("slow", "--sleep", "10m")
	slow.Spec.Timeout = &metav1.Duration{Duration: 3 * time.Second}
	missing := testRun("missing")
	missing.Spec.Runner.Image = "example.com/not-loaded:v1"
	missing.Spec.Runner.ImagePullPolicy = corev1.PullNever
	for _, run := range []*v1alpha1.TestRun{pass, fail, matrix, slow, missing} {
		if err := c.Create(ctx, run); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a passing run reports success, keeps its log and deletes its cluster", func(t *testing.T) {
		run := s.waitRun(ctx, t, "pass")
		if run.Status.Phase != v1alpha1.TestRunSucceeded {
			t.Fatalf("phase %s (%s), want Succeeded; its log:\n%s", run.Status.Phase, completeReason(run), h.run(ctx, "logs", "testrun", "pass").stdout)
		}
		if r := run.Status.Results; r == nil || r.Tests != 5 || r.Failures != 0 {
			t.Errorf("results %+v, want 5 tests, 0 failures (from the JUnit the test wrote)", r)
		}
		if run.Status.ExitCode == nil || *run.Status.ExitCode != 0 {
			t.Errorf("exit code %v, want 0", run.Status.ExitCode)
		}
		if run.Status.KubernetesVersion != newVersion {
			t.Errorf("version %q, want %s", run.Status.KubernetesVersion, newVersion)
		}
		// The test checked the cluster with the mounted kubeconfig, through
		// the gateway: its log says so, via the CLI and the server.
		logs := h.must("logs", "testrun", "pass")
		for _, want := range []string{"--- PASS: TestAPIAnswers", "--- PASS: TestVersion", "server version " + newVersion, "--- PASS: TestResolve", "--- PASS: TestUnreachable"} {
			if !strings.Contains(logs.stdout, want) {
				t.Errorf("ephemera logs testrun pass lacks %q:\n%s", want, logs)
			}
		}
		// Its pod ran on the management plane's node, on the pod network.
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{testrun.LabelTestRun: "pass"}); err != nil || len(pods.Items) != 1 {
			t.Fatalf("the runner pod of pass: %v, %d pods", err, len(pods.Items))
		}
		pod := pods.Items[0]
		if pod.Spec.HostNetwork || pod.Status.HostIP != mgmt.NodeIP || pod.Status.PodIP == "" || pod.Status.PodIP == pod.Status.HostIP {
			t.Errorf("runner pod: hostNetwork %v, node %s, pod IP %q; want the pod network of the management plane's node %s",
				pod.Spec.HostNetwork, pod.Status.HostIP, pod.Status.PodIP, mgmt.NodeIP)
		}
		// The server's copy needs credentials: a token that may get the
		// namespace's TestRuns.
		reader := saToken(ctx, t, c, "reader", rbacv1.PolicyRule{APIGroups: []string{"ephemera.dev"}, Resources: []string{"testruns"}, Verbs: []string{"get"}})
		stranger := saToken(ctx, t, c, "stranger")
		logURL := "https://" + s.metricsAddr + "/artifacts/default/pass/test.log"
		for _, tc := range []struct {
			token    string
			wantCode int
			wantBody string
		}{
			{"", http.StatusUnauthorized, "send a bearer token"},
			{"not-a-token", http.StatusUnauthorized, "did not accept the bearer token"},
			{stranger, http.StatusForbidden, `system:serviceaccount:default:stranger may not get testruns.ephemera.dev in namespace "default"`},
			{reader, http.StatusOK, "--- PASS: TestConfigMapRoundTrip"},
		} {
			if code, body := httpGet(t, web, logURL, tc.token); code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("GET %s with token %.10q: %d %q, want %d with %q", logURL, tc.token, code, body, tc.wantCode, tc.wantBody)
			}
		}
		s.waitGone(ctx, t, &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: "pass", Namespace: "default"}})

		get := h.must("get", "testruns")
		if !strings.Contains(get.stdout, "pass") || !strings.Contains(get.stdout, "Succeeded") {
			t.Errorf("get testruns:\n%s", get)
		}
		desc := h.must("describe", "testrun", "pass")
		// The events include the start, recorded by the controller.
		for _, want := range []string{"Succeeded", smokeImage, "github=success", `against TestCluster "pass"`} {
			if !strings.Contains(desc.stdout, want) {
				t.Errorf("describe testrun lacks %q:\n%s", want, desc)
			}
		}

		// GitHub got pending (waiting, then running) and then success,
		// with the token and a link to the run's artefacts.
		states := slices.Compact(github.states("state"))
		if !slices.Equal(states, []string{"pending", "success"}) {
			t.Errorf("GitHub states %v, want [pending success]", states)
		}
		for _, call := range github.all() {
			if call.Method != http.MethodPost || call.Path != "/api/v3/repos/acme/charts/statuses/"+testSHA {
				t.Errorf("GitHub call %s %s", call.Method, call.Path)
			}
			if call.Auth != "Bearer "+token {
				t.Errorf("GitHub auth %q", call.Auth)
			}
			link, _ := call.Body["target_url"].(string)
			if call.Body["context"] != "ephemera/pass" || !strings.HasPrefix(link, "https://"+s.metricsAddr+"/artifacts/_signed/") || !strings.HasSuffix(link, "/default/pass/") {
				t.Errorf("GitHub body %v, want a signed link to the run's artefacts", call.Body)
			}
		}
		// The link on the (public) status opens the run's artefacts
		// without credentials, and nothing else.
		calls := github.all()
		link, _ := calls[len(calls)-1].Body["target_url"].(string)
		if code, body := httpGet(t, web, link, ""); code != http.StatusOK || !strings.Contains(body, `<a href="test.log">`) {
			t.Errorf("the status link %s: %d %q, want the listing", link, code, body)
		}
		if code, body := httpGet(t, web, link+"test.log", ""); code != http.StatusOK || !strings.Contains(body, "--- PASS: TestConfigMapRoundTrip") {
			t.Errorf("the status link's test.log: %d %q", code, body)
		}
		if code, body := httpGet(t, web, strings.Replace(link, "/default/pass/", "/default/fail/", 1)+"test.log", ""); code != http.StatusForbidden {
			t.Errorf("the status link moved to another run: %d %q, want 403", code, body)
		}
		key := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "ephemera-artifacts-signing-key"}, key); err != nil || len(key.Data["key"]) != 32 {
			t.Errorf("the link key's Secret: %v, %d bytes", err, len(key.Data["key"]))
		}

		// /metrics off loopback is for those allowed the URL.
		scraper := saToken(ctx, t, c, "scraper")
		bindClusterRole(ctx, t, c, "scraper", rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}})
		metricsURL := "https://" + s.metricsAddr + "/metrics"
		for _, tc := range []struct {
			token    string
			wantCode int
		}{
			{"", http.StatusUnauthorized},
			{reader, http.StatusForbidden},
			{scraper, http.StatusOK},
		} {
			if code, body := httpGet(t, web, metricsURL, tc.token); code != tc.wantCode || code == http.StatusOK && !strings.Contains(body, "ephemera_testclusters") {
				t.Errorf("GET /metrics with token %.10q: %d, want %d\n%s", tc.token, code, tc.wantCode, tail(body, 300))
			}
		}
	})

	t.Run("a failing run reports failure and holds its cluster until the hold ends", func(t *testing.T) {
		run := s.waitRun(ctx, t, "fail")
		if run.Status.Phase != v1alpha1.TestRunFailed {
			t.Fatalf("phase %s (%s), want Failed", run.Status.Phase, completeReason(run))
		}
		if r := run.Status.Results; r == nil || r.Tests != 4 || r.Failures != 1 || !slices.Equal(r.Failed, []string{"smoke/TestMeantToFail"}) {
			t.Errorf("results %+v, want 4 tests, 1 failure: smoke/TestMeantToFail", r)
		}
		if run.Status.ExitCode == nil || *run.Status.ExitCode != 1 {
			t.Errorf("exit code %v, want 1", run.Status.ExitCode)
		}
		if run.Status.HeldUntil == nil {
			t.Fatal("no status.heldUntil")
		}
		tc, err := s.getTC(ctx, "fail")
		if err != nil {
			t.Fatalf("the held TestCluster: %v", err)
		}
		if tc.Spec.HoldUntil == nil || tc.Status.Phase != v1alpha1.TestClusterReady {
			t.Errorf("held TestCluster: holdUntil %v, phase %s", tc.Spec.HoldUntil, tc.Status.Phase)
		}
		cluster := tc.Spec.ClusterName
		if _, ok := h.clusters()[cluster]; !ok {
			t.Errorf("the held cluster %s is gone", cluster)
		}
		// The hold ends; the lease takes the cluster.
		waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		s.waitGone(waitCtx, t, tc)
		if _, ok := h.clusters()[cluster]; ok {
			t.Errorf("cluster %s outlived its hold", cluster)
		}

		states := slices.Compact(gitlab.states("state"))
		if want := []string{"pending", "running", "failed"}; !slices.Equal(states, want) {
			t.Errorf("GitLab states %v, want %v", states, want)
		}
		for _, call := range gitlab.all() {
			if call.Method != http.MethodPost || call.Path != "/api/v4/projects/acme%2Fplatform%2Fcharts/statuses/"+testSHA {
				t.Errorf("GitLab call %s %s", call.Method, call.Path)
			}
			if call.Auth != "PRIVATE-TOKEN "+token || call.Body["name"] != "e2e" {
				t.Errorf("GitLab call auth %q body %v", call.Auth, call.Body)
			}
		}
		if last := gitlab.all(); len(last) > 0 && !strings.Contains(fmt.Sprint(last[len(last)-1].Body["description"]), "smoke/TestMeantToFail") {
			t.Errorf("the failure status does not name the failing test: %v", last[len(last)-1].Body)
		}
	})

	t.Run("a run deleted and created again under its name runs again", func(t *testing.T) {
		// A CI job that retries does this: the old run's cluster (held
		// here) is still going when the new run starts.
		first := testRun("again", "--fail")
		first.Spec.OnFailure = v1alpha1.FailureHold
		if err := c.Create(ctx, first); err != nil {
			t.Fatal(err)
		}
		if run := s.waitRun(ctx, t, "again"); run.Status.HeldUntil == nil {
			t.Fatalf("the first run holds no cluster: %s", completeReason(run))
		}
		if err := c.Delete(ctx, first); err != nil {
			t.Fatal(err)
		}
		s.waitGone(ctx, t, &v1alpha1.TestRun{ObjectMeta: metav1.ObjectMeta{Name: "again", Namespace: "default"}})
		if err := c.Create(ctx, testRun("again")); err != nil {
			t.Fatal(err)
		}
		run := s.waitRun(ctx, t, "again")
		if run.Status.Phase != v1alpha1.TestRunSucceeded {
			t.Errorf("phase %s (%s), want Succeeded", run.Status.Phase, completeReason(run))
		}
	})

	t.Run("a matrix runs one cell per version and merges their JUnit", func(t *testing.T) {
		run := s.waitRun(ctx, t, "matrix")
		if run.Status.Phase != v1alpha1.TestRunSucceeded {
			t.Fatalf("phase %s (%s), want Succeeded; cells %+v", run.Status.Phase, completeReason(run), run.Status.Cells)
		}
		if len(run.Status.Cells) != 2 {
			t.Fatalf("cells %+v, want 2", run.Status.Cells)
		}
		for i, want := range []string{oldVersion, newVersion} {
			cell := run.Status.Cells[i]
			if cell.Name != want || cell.KubernetesVersion != want || cell.Phase != v1alpha1.TestRunSucceeded || cell.Results == nil || cell.Results.Tests != 3 {
				t.Errorf("cell %d: %+v, want %s Succeeded with 3 tests", i, cell, want)
			}
			// The cell's test checked the server's version against
			// EPHEMERA_KUBERNETES_VERSION: it really ran on that version.
			child := &v1alpha1.TestRun{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: cell.Run}, child); err != nil {
				t.Fatal(err)
			}
			if child.Status.KubernetesVersion != want {
				t.Errorf("cell %s ran on %s", want, child.Status.KubernetesVersion)
			}
		}
		if r := run.Status.Results; r == nil || r.Tests != 6 {
			t.Errorf("matrix results %+v, want 6 tests", r)
		}
		data, err := os.ReadFile(filepath.Join(run.Status.Artifacts, "junit.xml"))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Suites []struct {
				Name  string `xml:"name,attr"`
				Props []struct {
					Name  string `xml:"name,attr"`
					Value string `xml:"value,attr"`
				} `xml:"properties>property"`
			} `xml:"testsuite"`
		}
		if err := xml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		var cells []string
		for _, suite := range doc.Suites {
			for _, p := range suite.Props {
				if p.Name == runner.CellPropertyName {
					cells = append(cells, p.Value+"="+suite.Name)
				}
			}
		}
		if want := []string{oldVersion + "=" + oldVersion + "/smoke", newVersion + "=" + newVersion + "/smoke"}; !slices.Equal(cells, want) {
			t.Errorf("merged JUnit suites %v, want %v:\n%s", cells, want, data)
		}
		logs := h.must("logs", "testrun", "matrix")
		if !strings.Contains(logs.stdout, "==> cell "+oldVersion) || !strings.Contains(logs.stdout, "server version "+oldVersion) {
			t.Errorf("logs of the matrix:\n%s", logs)
		}
	})

	t.Run("a run past its timeout fails as TimedOut", func(t *testing.T) {
		run := s.waitRun(ctx, t, "slow")
		c := meta.FindStatusCondition(run.Status.Conditions, v1alpha1.ConditionComplete)
		if run.Status.Phase != v1alpha1.TestRunFailed || c.Reason != v1alpha1.ReasonTimedOut {
			t.Errorf("phase %s, %s; want Failed, TimedOut", run.Status.Phase, completeReason(run))
		}
	})

	t.Run("a runner image that is not loaded is an Error saying how to load it", func(t *testing.T) {
		run := s.waitRun(ctx, t, "missing")
		c := meta.FindStatusCondition(run.Status.Conditions, v1alpha1.ConditionComplete)
		if run.Status.Phase != v1alpha1.TestRunError || c.Reason != v1alpha1.ReasonRunnerError || !strings.Contains(c.Message, "ephemera load image ARCHIVE --server") {
			t.Errorf("phase %s, %s; want Error, RunnerError with the load hint", run.Status.Phase, completeReason(run))
		}
	})

	t.Run("a Job of the run's name that is not the run's ends it as an Error", func(t *testing.T) {
		never := int64(1)
		foreign := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: "default"},
			Spec: batchv1.JobSpec{ActiveDeadlineSeconds: &never, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "x", Image: "example.com/not-loaded:v1", ImagePullPolicy: corev1.PullNever}},
			}}},
		}
		if err := c.Create(ctx, foreign); err != nil {
			t.Fatal(err)
		}
		defer func() {
			bg := metav1.DeletePropagationBackground
			_ = c.Delete(context.Background(), foreign, &client.DeleteOptions{PropagationPolicy: &bg})
		}()
		if err := c.Create(ctx, testRun("taken")); err != nil {
			t.Fatal(err)
		}
		run := s.waitRun(ctx, t, "taken")
		c := meta.FindStatusCondition(run.Status.Conditions, v1alpha1.ConditionComplete)
		if run.Status.Phase != v1alpha1.TestRunError || c.Reason != v1alpha1.ReasonRunnerError || !strings.Contains(c.Message, `a Job named "taken" exists already`) {
			t.Errorf("phase %s, %s; want Error, RunnerError naming the Job", run.Status.Phase, completeReason(run))
		}
		s.waitGone(ctx, t, &v1alpha1.TestCluster{ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: "default"}})
	})

	t.Run("no token in any status, condition or log", func(t *testing.T) {
		var runs v1alpha1.TestRunList
		if err := c.List(ctx, &runs); err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(runs)
		if strings.Contains(string(data), token) || strings.Contains(s.log(), token) {
			t.Error("the forge token shows in a TestRun or the server log")
		}
	})
}

// managementPlaneNode is what the embedded management plane's cluster.json
// says of its etcd and its node.
type managementPlaneNode struct {
	EtcdClient, EtcdPeer int
	NodeIP               string
}

// managementNode reads the etcd ports and node address of the server's
// management plane, which must have a real node.
func managementNode(t *testing.T, h *harness) managementPlaneNode {
	t.Helper()
	path := filepath.Join(ephemeraserver.NewLayout(h.stateDir).ManagementPlaneStateDir(), "clusters", ephemeraserver.ManagementPlaneName, "cluster.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Ports struct {
			EtcdClient int `json:"etcdClient"`
			EtcdPeer   int `json:"etcdPeer"`
		} `json:"ports"`
		Node *struct {
			Network struct {
				NodeIP string `json:"nodeIP"`
			} `json:"network"`
		} `json:"node"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if st.Node == nil || st.Node.Network.NodeIP == "" || st.Ports.EtcdClient == 0 || st.Ports.EtcdPeer == 0 {
		t.Fatalf("%s: no real node, node address or etcd ports:\n%s", path, b)
	}
	return managementPlaneNode{EtcdClient: st.Ports.EtcdClient, EtcdPeer: st.Ports.EtcdPeer, NodeIP: st.Node.Network.NodeIP}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// servingCert writes a certificate for 127.0.0.1 as serve's
// --metrics-cert-dir wants it, and returns the dir and a pool that trusts it.
func servingCert(t *testing.T) (string, *x509.CertPool) {
	t.Helper()
	crt, key, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"tls.crt": crt, "tls.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(crt) {
		t.Fatal("no certificate in the generated PEM")
	}
	return dir, pool
}

// saToken makes a ServiceAccount in default, allowed rules there (a Role),
// and returns a token of it.
func saToken(ctx context.Context, t *testing.T, c client.Client, name string, rules ...rbacv1.PolicyRule) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if err := c.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if len(rules) > 0 {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Rules: rules}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: "default"}},
		}
		for _, o := range []client.Object{role, binding} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}
	if err := c.SubResource("token").Create(ctx, sa, req); err != nil {
		t.Fatal(err)
	}
	return req.Status.Token
}

// bindClusterRole allows the ServiceAccount default/name rules across the
// cluster (a ClusterRole).
func bindClusterRole(ctx context.Context, t *testing.T, c client.Client, name string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + name}, Rules: rules}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: "default"}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

// httpGet GETs url with a bearer token ("" for none) and returns the status
// code and body.
func httpGet(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
