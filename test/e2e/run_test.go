package e2e

import (
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// junitScript writes a JUnit report with the given test cases (name=pass or
// name=fail) to $EPHEMERA_ARTIFACTS, after checking the cluster with the
// kubectl of the default version.
func junitScript(t *testing.T, cases ...string) string {
	t.Helper()
	var xml strings.Builder
	xml.WriteString(`<testsuite name="e2e">`)
	for _, c := range cases {
		name, verdict, _ := strings.Cut(c, "=")
		if verdict == "fail" {
			xml.WriteString(`<testcase name="` + name + `"><failure message="boom"/></testcase>`)
		} else {
			xml.WriteString(`<testcase name="` + name + `"/>`)
		}
	}
	xml.WriteString(`</testsuite>`)
	kubectl, err := osexec.Command(ephemeraBin, "kube", "path", "kubectl").Output()
	if err != nil {
		t.Fatal(err)
	}
	return `set -e
echo "cluster=$EPHEMERA_CLUSTER_NAME version=$EPHEMERA_KUBERNETES_VERSION endpoint=$EPHEMERA_CLUSTER_ENDPOINT"
` + strings.TrimSpace(string(kubectl)) + ` get nodes -o name
echo '` + xml.String() + `' > "$EPHEMERA_ARTIFACTS/junit.xml"`
}

func exitCode(err error) int {
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestRunLocal runs test commands in-job: each gets a local cluster of its
// own, KUBECONFIG and the cluster's facts, and its JUnit is read.
func TestRunLocal(t *testing.T) {
	h := newHarness(t)
	art := t.TempDir()
	sim := []string{"run", "--simulated-nodes", "1", "--artifacts"}

	t.Run("a passing run deletes its cluster", func(t *testing.T) {
		hh := h.with(t)
		dir := filepath.Join(art, "pass")
		r := hh.run(t.Context(), append(sim, dir, "--", "sh", "-c", junitScript(t, "install=pass", "upgrade=pass"))...)
		if r.err != nil {
			t.Fatalf("run: %s", r)
		}
		for _, want := range []string{"cluster=run-", "version=" + newVersion, "endpoint=https://", "node/sim-1", "Run PASSED", "2 tests, 0 failed"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		log, err := os.ReadFile(filepath.Join(dir, "test.log"))
		if err != nil || !strings.Contains(string(log), "node/sim-1") {
			t.Errorf("test.log: %v\n%s", err, log)
		}
		if cs := hh.clusters(); len(cs) != 0 {
			t.Errorf("clusters left after a passing run: %v", cs)
		}
	})

	t.Run("a run on a real node: the test waits for its pods and writes JUnit", func(t *testing.T) {
		hh := h.with(t)
		dir := filepath.Join(art, "real")
		kubectl, err := osexec.Command(ephemeraBin, "kube", "path", "kubectl").Output()
		if err != nil {
			t.Fatal(err)
		}
		k := strings.TrimSpace(string(kubectl))
		script := k + ` wait --for=condition=Ready node/node-1 --timeout=60s
` + k + ` -n kube-system wait --for=condition=Ready pod -l k8s-app=kube-dns --timeout=60s
` + junitScript(t, "node=pass", "dns=pass")
		r := hh.run(t.Context(), "run", "--real-nodes", "1", "--artifacts", dir, "--", "sh", "-ec", script)
		if r.err != nil {
			t.Fatalf("run: %s", r)
		}
		for _, want := range []string{"node/node-1 condition met", "Run PASSED", "2 tests, 0 failed"} {
			if !strings.Contains(r.stderr+r.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, r)
			}
		}
		if cs := hh.clusters(); len(cs) != 0 {
			t.Errorf("clusters left after a passing run: %v", cs)
		}
	})

	t.Run("the command's exit status is ephemera's", func(t *testing.T) {
		hh := h.with(t)
		r := hh.run(t.Context(), append(sim, filepath.Join(art, "exit"), "--", "sh", "-c", "exit 3")...)
		if code := exitCode(r.err); code != 3 || !strings.Contains(r.stderr, "no JUnit reports") {
			t.Errorf("exit status %d, want 3:\n%s", code, r)
		}
	})

	t.Run("a failing JUnit test fails the run and --on-failure hold keeps the cluster", func(t *testing.T) {
		hh := h.with(t)
		r := hh.run(t.Context(), append(sim, filepath.Join(art, "fail"), "--on-failure", "hold", "--", "sh", "-c", junitScript(t, "install=pass", "upgrade=fail"))...)
		if code := exitCode(r.err); code != 1 {
			t.Errorf("exit status %d, want 1:\n%s", code, r)
		}
		for _, want := range []string{"Run FAILED", "2 tests, 1 failed", "FAIL e2e/upgrade", "Kept cluster run-", "ephemera delete cluster run-"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		cs := hh.clusters()
		if len(cs) != 1 {
			t.Fatalf("want the failed run's cluster kept, have %v", cs)
		}
		for name := range cs {
			hh.must("delete", "cluster", name)
		}
	})

	t.Run("bad input is refused before anything is created", func(t *testing.T) {
		hh := h.with(t)
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"run", "go", "test"}, "put the test command after --"},
			{[]string{"run", "--pool", "ci", "--real-nodes", "1", "--", "true"}, "are for local clusters"},
			{[]string{"run", "--on-failure", "keep", "--", "true"}, `--on-failure "keep": want delete or hold`},
		} {
			r := hh.run(t.Context(), tc.args...)
			if r.err == nil || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%v: want an error saying %q, got %s", tc.args, tc.want, r)
			}
		}
		if cs := hh.clusters(); len(cs) != 0 {
			t.Errorf("clusters created by bad input: %v", cs)
		}
	})
}
