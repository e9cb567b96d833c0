package runner

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLocalRun(t *testing.T) {
	dir := t.TempDir()
	script := `echo "cluster $EPHEMERA_CLUSTER_NAME at $EPHEMERA_CLUSTER_ENDPOINT ($EPHEMERA_KUBERNETES_VERSION) kubeconfig $KUBECONFIG"
cat > "$EPHEMERA_ARTIFACTS/junit.xml" <<'X'
<testsuite name="s"><testcase name="ok"/><testcase name="bad"><failure/></testcase></testsuite>
X
echo to stderr >&2
exit 3`
	var out bytes.Buffer
	run := LocalRun{
		Argv:      []string{"sh", "-c", script},
		Cluster:   Cluster{Name: "c1", Endpoint: "https://10.0.0.1:6443", KubernetesVersion: "v1.36.3", Kubeconfig: "/k"},
		Artifacts: filepath.Join(dir, "art"),
		Out:       &out,
	}
	o, err := run.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if o.ExitCode != 3 || o.Passed() || o.Result.Tests != 2 || o.Result.Failing[0] != "s/bad" {
		t.Errorf("outcome %+v", o)
	}
	want := "cluster c1 at https://10.0.0.1:6443 (v1.36.3) kubeconfig /k"
	log, _ := os.ReadFile(o.Log)
	for _, got := range []string{out.String(), string(log)} {
		if !strings.Contains(got, want) || !strings.Contains(got, "to stderr") {
			t.Errorf("output %q lacks %q and stderr", got, want)
		}
	}

	o, err = LocalRun{Argv: []string{"sleep", "5"}, Artifacts: filepath.Join(dir, "t"), Timeout: 100 * time.Millisecond, Out: &out}.Run(t.Context())
	if err != nil || !o.TimedOut || o.Passed() {
		t.Errorf("timeout: %+v %v", o, err)
	}
	if _, err := (LocalRun{Argv: []string{"/no/such/program"}, Artifacts: filepath.Join(dir, "n"), Out: &out}).Run(t.Context()); err == nil {
		t.Error("a missing program gave no error")
	}
	o, err = LocalRun{Argv: []string{"true"}, Artifacts: filepath.Join(dir, "p"), Out: &out}.Run(t.Context())
	if err != nil || !o.Passed() || o.Result.Tests != 0 {
		t.Errorf("a passing command without reports: %+v %v", o, err)
	}
}
