package failpoint

import (
	"errors"
	"os"
	osexec "os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// hitEnv, when set, turns the test binary into a helper that hits the
// failpoint it names three times, printing "hit N" before each.
const hitEnv = "EPHEMERA_FAILPOINT_TEST_HIT"

func TestMain(m *testing.M) {
	if name := os.Getenv(hitEnv); name != "" {
		for i := 1; i <= 3; i++ {
			os.Stdout.WriteString("hit " + string(rune('0'+i)) + "\n")
			Inject(name)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]int64
	}{
		{"", nil},
		{ReaperAfterDelete, map[string]int64{ReaperAfterDelete: 1}},
		{" reaper/after-delete@3 , serve/before-load ", map[string]int64{ReaperAfterDelete: 3, ServeBeforeLoad: 1}},
		{"no/such-point,reaper/after-delete@0,reaper/after-delete@x", nil},
	} {
		var got map[string]int64
		for name, p := range parse(tc.in) {
			if got == nil {
				got = map[string]int64{}
			}
			got[name] = p.at
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("parse(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range All {
		if seen[name] {
			t.Errorf("failpoint %q is listed twice", name)
		}
		seen[name] = true
	}
}

// TestInject runs the test binary as a helper that hits a failpoint three
// times, armed at the given hit, and checks where it died.
func TestInject(t *testing.T) {
	for _, tc := range []struct {
		armed      string
		wantHits   string
		wantKilled bool
	}{
		{"", "hit 1\nhit 2\nhit 3\n", false},
		{TestClusterBeforeSecret, "hit 1\n", true},
		{TestClusterBeforeSecret + "@2", "hit 1\nhit 2\n", true},
		{ReaperAfterDelete, "hit 1\nhit 2\nhit 3\n", false}, // another failpoint
	} {
		t.Run(tc.armed, func(t *testing.T) {
			cmd := osexec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), hitEnv+"="+TestClusterBeforeSecret, EnvVar+"="+tc.armed)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *osexec.ExitError
			killed := errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
			if killed != tc.wantKilled || !killed && err != nil {
				t.Errorf("helper ended with %v, want killed %v; stderr:\n%s", err, tc.wantKilled, stderr.String())
			}
			if stdout.String() != tc.wantHits {
				t.Errorf("helper printed %q, want %q", stdout.String(), tc.wantHits)
			}
			if said := strings.Contains(stderr.String(), "failpoint "+TestClusterBeforeSecret+": killing the process"); said != tc.wantKilled {
				t.Errorf("stderr %q; want the failpoint named: %v", stderr.String(), tc.wantKilled)
			}
		})
	}
}
