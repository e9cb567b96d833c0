package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	ephemeraserver "github.com/ephemera-dev/ephemera/internal/server"
)

// server is an `ephemera serve` process of a test, with its embedded
// management plane.
type server struct {
	h           *harness
	args        []string
	cmd         *osexec.Cmd
	exited      chan error
	logPath     string
	metricsAddr string
	healthAddr  string
	client      client.WithWatch
	// kubeconfig is the management cluster's; empty means the embedded
	// management plane's.
	kubeconfig string
	// env is added to serve's environment at the next launch.
	env []string
}

// startServer runs `ephemera serve` on the harness's state dir and waits
// until it is ready. At the end of the test it deletes every TestCluster
// and pool (their clusters with them) and stops the server, which stops
// the management plane.
func (h *harness) startServer(args ...string) *server {
	h.t.Helper()
	s := &server{h: h, args: args, logPath: filepath.Join(h.stateDir, "serve.log"),
		metricsAddr: freeAddr(h.t), healthAddr: freeAddr(h.t)}
	s.start()
	h.t.Cleanup(s.cleanup)
	return s
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *server) start() {
	s.h.t.Helper()
	s.launch()
	s.waitReady()
}

// launch starts the serve process without waiting for it.
func (s *server) launch() {
	t := s.h.t
	t.Helper()
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	args := append([]string{"serve", "--metrics-bind-address", s.metricsAddr, "--health-probe-bind-address", s.healthAddr, "--reap-interval", "2s"}, s.args...)
	s.cmd = s.h.command(context.Background(), args...)
	s.cmd.Env = append(s.cmd.Env, s.env...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := startTracked(s.cmd); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait() }()
}

// waitReady waits until the server's /readyz answers and makes its client.
func (s *server) waitReady() {
	t := s.h.t
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !s.ready() {
		select {
		case err := <-s.exited:
			t.Fatalf("serve exited: %v\n%s", err, s.log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after 2m:\n%s", s.log())
		}
	}
	kubeconfig := s.kubeconfig
	if kubeconfig == "" {
		kubeconfig = ephemeraserver.NewLayout(s.h.stateDir).Kubeconfig()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	if s.client, err = client.NewWithWatch(cfg, client.Options{Scheme: ephemeraserver.Scheme()}); err != nil {
		t.Fatal(err)
	}
}

func (s *server) ready() bool {
	resp, err := http.Get("http://" + s.healthAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// kill SIGKILLs the server; its management plane and clusters keep running.
func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited //nolint:errcheck // killed: its exit status says only that
}

// stop sends SIGTERM and waits for the server to exit.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		return err
	case <-time.After(time.Minute):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("serve did not stop within 1m")
	}
}

func (s *server) cleanup() {
	t := s.h.t
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if s.cmd.ProcessState == nil {
		for _, ns := range []string{"default", "team-a", "team-b"} {
			_ = s.client.DeleteAllOf(ctx, &v1alpha1.ClusterPool{}, client.InNamespace(ns))
			_ = s.client.DeleteAllOf(ctx, &v1alpha1.TestCluster{}, client.InNamespace(ns))
		}
		if err := waitFor(ctx, func() (bool, string) {
			var tcs v1alpha1.TestClusterList
			if err := s.client.List(ctx, &tcs); err != nil {
				return false, err.Error()
			}
			return len(tcs.Items) == 0, fmt.Sprintf("%d TestClusters left", len(tcs.Items))
		}); err != nil {
			t.Errorf("cleanup: %v\n%s", err, tail(s.log(), 4000))
		}
		// Pool clusters go in the background once their pool is gone.
		if err := waitFor(ctx, func() (bool, string) {
			var left []string
			for name := range s.h.clusters() {
				if name != "mgmt" {
					left = append(left, name)
				}
			}
			return len(left) == 0, fmt.Sprintf("clusters left: %v", left)
		}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := s.stop(); err != nil {
			t.Errorf("stop serve: %v\n%s", err, tail(s.log(), 4000))
		}
	}
	if procs := processesUnder(ephemeraserver.NewLayout(s.h.stateDir).Dir()); len(procs) > 0 {
		t.Errorf("the management plane still runs after serve stopped:\n%s", strings.Join(procs, "\n"))
	}
	if t.Failed() {
		t.Logf("serve log:\n%s", tail(s.log(), 20000))
	}
}

// waitFor polls check until it reports done or ctx ends.
func waitFor(ctx context.Context, check func() (bool, string)) error {
	var last string
	for {
		done, msg := check()
		if done {
			return nil
		}
		last = msg
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out: %s", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// metric returns the sum of a metric's samples whose labels contain match.
func (s *server) metric(name, match string) float64 {
	resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) || !strings.Contains(line, match) {
			continue
		}
		rest := strings.TrimPrefix(line, name)
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
