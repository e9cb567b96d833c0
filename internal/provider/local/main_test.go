package local

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// sleeperEnv, when set, turns the test binary into a process that only
// sleeps, so that tests get a child whose command line they choose.
const sleeperEnv = "EPHEMERA_LOCAL_TEST_SLEEPER"

// testSupervisorArg, as the first argument, turns the test binary into a
// cluster's supervisor (Supervise) for the dir given as the second: real
// clusters in this package's tests are supervised by it (see
// realNodeProvider).
const testSupervisorArg = "-ephemera-test-supervise"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == testSupervisorArg {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := Supervise(ctx, os.Args[2])
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
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
