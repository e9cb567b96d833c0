package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKilledCreateIsVisibleAndDeletable kills the CLI with SIGKILL at many
// points of a create. Whatever the point, the cluster is never hidden (if its
// dir exists, get clusters lists it) and delete removes every trace.
func TestKilledCreateIsVisibleAndDeletable(t *testing.T) {
	h := newHarness(t)
	for i, delay := range []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 300 * time.Millisecond, 1500 * time.Millisecond} {
		name := fmt.Sprintf("killed-%d", i)
		t.Run(delay.String(), func(t *testing.T) {
			cmd := h.command(context.Background(), "create", "cluster", name, "--simulated-nodes", "2")
			if err := startTracked(cmd); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			untrack(cmd.Process.Pid)

			_, statErr := os.Stat(h.clusterDir(name))
			c, listed := h.clusters()[name]
			switch {
			case statErr == nil && !listed:
				t.Fatalf("cluster dir exists but get clusters hides it")
			case listed && c.Phase != "Broken" && c.Phase != "Creating" && c.Phase != "Running":
				t.Fatalf("unexpected phase %q", c.Phase)
			}
			t.Logf("killed after %s: listed=%v phase=%s message=%q", delay, listed, c.Phase, c.Message)
			h.must("delete", "cluster", name)
			if procs := processesUnder(h.clusterDir(name)); len(procs) > 0 {
				t.Errorf("processes left:\n%s", strings.Join(procs, "\n"))
			}
			if _, err := os.Stat(h.clusterDir(name)); err == nil {
				t.Errorf("cluster dir left after delete")
			}
		})
	}
}

// TestInterruptedCreateCleansUp sends Ctrl-C (SIGINT) to a create in
// progress: the CLI stops, deletes the half-created cluster and fails.
func TestInterruptedCreateCleansUp(t *testing.T) {
	h := newHarness(t)
	cmd := h.command(context.Background(), "create", "cluster", "ctrl-c", "--simulated-nodes", "2")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := startTracked(cmd); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the cluster dir exists: the create is under way.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(h.clusterDir("ctrl-c")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("create never started")
		}
		time.Sleep(time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	untrack(cmd.Process.Pid)
	if err == nil {
		t.Fatalf("interrupted create exited 0:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted") || !strings.Contains(stderr.String(), "half-created cluster was deleted") {
		t.Errorf("stderr does not explain the interruption and cleanup:\n%s", stderr.String())
	}
	h.assertNothingLeft()
}

// TestBrokenClusterIsShownAndDeleted kills every process of a running
// cluster, as a host restart would: get clusters shows it Broken with a
// reason, and delete removes it.
func TestBrokenClusterIsShownAndDeleted(t *testing.T) {
	h := newHarness(t)
	h.must("create", "cluster", "victim")
	procs := processesUnder(h.clusterDir("victim"))
	if len(procs) < 6 {
		t.Fatalf("want a supervisor and 5 components, got:\n%s", strings.Join(procs, "\n"))
	}
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(p, "%d:", &pid); err != nil || pid <= 0 {
			t.Fatalf("no pid in %q: %v", p, err) // kill(0) would signal the test's own process group
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := h.clusters()["victim"]
		if c.Phase == "Broken" {
			if !strings.Contains(c.Message, "processes are gone") {
				t.Errorf("broken without a useful reason: %q", c.Message)
			}
			r := h.must("get", "clusters")
			if !strings.Contains(r.stdout, "Broken") || !strings.Contains(r.stderr, "delete") {
				t.Errorf("table should show Broken and hint at delete:\n%s\n%s", r.stdout, r.stderr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster with no processes is %+v, want Broken", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.must("delete", "cluster", "victim")
	h.assertNothingLeft()
}

// TestSupervisorRestartsCrashedComponent kills kube-scheduler: the
// supervisor starts it again and the cluster returns to Running.
func TestSupervisorRestartsCrashedComponent(t *testing.T) {
	h := newHarness(t)
	h.must("create", "cluster", "crash")
	var pid int
	for _, p := range processesUnder(h.clusterDir("crash")) {
		if strings.Contains(p, "/kube-scheduler ") {
			if _, err := fmt.Sscanf(p, "%d:", &pid); err != nil {
				t.Fatalf("no pid in %q: %v", p, err)
			}
		}
	}
	if pid == 0 {
		t.Fatal("no kube-scheduler process found")
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := h.clusters()["crash"]
		restarted := false
		for _, comp := range c.Components {
			if comp.Name == "kube-scheduler" && comp.Restarts >= 1 && comp.Ready {
				restarted = true
			}
		}
		if restarted && c.Phase == "Running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-scheduler was not restarted: %+v", c)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
