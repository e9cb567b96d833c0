package local

import (
	"os"
	osexec "os/exec"
	"syscall"
	"testing"
	"time"
)

// sleeperEnv, when set, turns the test binary into a process that only
// sleeps, so that tests get a child whose command line they choose.
const sleeperEnv = "EPHEMERA_LOCAL_TEST_SLEEPER"

func TestMain(m *testing.M) {
	if os.Getenv(sleeperEnv) != "" {
		// Killed by the test; exits on its own should the test not.
		time.Sleep(30 * time.Second)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startSleeper starts a child process whose argv ends with args and that
// sleeps until killed. The child is killed and reaped when the test ends.
// Its cmdline is final when startSleeper returns: Start returns after exec.
func startSleeper(t *testing.T, args ...string) *osexec.Cmd {
	t.Helper()
	cmd := osexec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), sleeperEnv+"=1")
	// Should the test binary die, the kernel kills the child too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}
