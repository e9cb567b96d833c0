package local

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/probe"
)

// Supervisor timings.
const (
	apiStartTimeout   = 2 * time.Minute
	healthTimeout     = 2 * time.Minute
	healthInterval    = 5 * time.Second
	pollInterval      = 25 * time.Millisecond
	minRestartBackoff = 500 * time.Millisecond
	maxRestartBackoff = 30 * time.Second
	stopGrace         = 3 * time.Second
	// logWaitDelay bounds copying a component's output after it exited.
	logWaitDelay = time.Second
	// imageImportTimeout bounds waiting for containerd and importing the
	// node's images.
	imageImportTimeout = time.Minute
)

// Supervise runs the cluster whose state is in dir until ctx ends: it starts
// the components in stage order, registers the simulated nodes, restarts any
// component that exits, and reports progress in status.json. When ctx ends it
// stops the components. Only one supervisor runs per cluster; a second one
// returns at once.
func Supervise(ctx context.Context, dir string) error {
	lock, err := flock.TryLock(filepath.Join(dir, supervisorLock))
	if errors.Is(err, flock.ErrLocked) {
		return fmt.Errorf("cluster in %s is already supervised", dir)
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()

	var st clusterState
	if err := readJSON(filepath.Join(dir, clusterFile), &st); err != nil {
		return fmt.Errorf("read cluster plan: %w", err)
	}
	s := &supervisor{
		dir:   dir,
		state: st,
		spawn: make(chan spawnRequest),
		status: supervisorStatus{
			PID:        os.Getpid(),
			Phase:      supervisorStarting,
			StartedAt:  time.Now(),
			Components: map[string]componentStatus{},
		},
	}
	fail := func(err error) error {
		s.update(func(st *supervisorStatus) { st.Phase, st.Message = supervisorFailed, err.Error() })
		return err
	}
	if err := s.setupClients(); err != nil {
		return fail(err)
	}
	// Before anything is started, which would inherit them.
	files := takeInheritedFiles(st)
	if files.advertise != nil {
		if err := s.routeAdvertised(ctx, files); err != nil {
			return fail(err)
		}
	}
	if st.Node != nil {
		upstreams, err := dnsUpstreams(st.Node)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dns: %v\n", err)
		}
		if err := waitNodeAddress(ctx, st.Node.Network.NodeIP); err != nil {
			return fail(err)
		}
		if err := prepareNode(dir, st); err != nil {
			return fail(fmt.Errorf("prepare the node: %w", err))
		}
		if err := s.startNetServices(ctx, files, upstreams); err != nil {
			return fail(err)
		}
	}
	// Simulated nodes only: addresses in the Services' status.
	s.startLoadBalancer(ctx, st.LB)
	go s.spawner()

	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	start := func(stage int) {
		for _, c := range st.Components {
			if c.Stage == stage {
				wg.Add(1)
				go func() { defer wg.Done(); s.keepRunning(runCtx, c) }()
			}
		}
	}

	s.update(func(*supervisorStatus) {})
	start(stageAtOnce)
	if st.Node != nil {
		// Images go in while the API server starts; the kubelet starts
		// after them (see startup).
		s.startImport(runCtx)
	}
	var startedLate sync.Once
	startLate := func() { startedLate.Do(func() { start(stageAfterAPI) }) }
	// A start-up that fails (a slow machine, an API server that needed a
	// restart) is reported as Failed and tried again: the cluster becomes
	// Running if it recovers.
	for backoff := 5 * time.Second; ; backoff = min(2*backoff, maxRestartBackoff) {
		err := s.startup(ctx, startLate)
		if err == nil || ctx.Err() != nil {
			break
		}
		msg := fmt.Sprintf("%v (retrying in %s)", err, backoff)
		s.update(func(st *supervisorStatus) { st.Phase, st.Message = supervisorFailed, msg })
		fmt.Fprintf(os.Stderr, "start-up failed: %s\n", msg)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	s.watchHealth(ctx)
	return nil
}

// startup waits for the API, starts the late components (once), registers
// the nodes and waits until every component is healthy.
//
// A real node's kubelet and kube-proxy start with the other late components,
// once its images are in too. (Starting them with the API server was
// measured slower on 2 cores: they compete with it for CPU.)
func (s *supervisor) startup(ctx context.Context, startLate func()) error {
	if err := s.waitAPI(ctx); err != nil {
		return err
	}
	apiReady := time.Now()
	s.update(func(st *supervisorStatus) {
		if st.APIReadyAt == nil {
			st.APIReadyAt = &apiReady
		}
	})
	if s.state.Node != nil && !s.imported {
		select {
		case err := <-s.imagesImported:
			if err != nil {
				// The next start-up attempt imports again.
				s.startImport(ctx)
				return fmt.Errorf("import the node's images: %w", err)
			}
			s.imported = true
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	startLate()
	if s.state.Node != nil {
		if err := ensureDNS(ctx, s.client, *s.state.Node); err != nil {
			return fmt.Errorf("deploy cluster DNS: %w", err)
		}
		if err := ensureLocalRegistryHosting(ctx, s.client, *s.state.Node); err != nil {
			return fmt.Errorf("publish the local registry (kube-public/local-registry-hosting): %w", err)
		}
	}
	if err := registerSimulatedNodes(ctx, s.client, s.state.Name, s.state.Spec.Nodes.SimulatedCount()); err != nil {
		return fmt.Errorf("register simulated nodes: %w", err)
	}
	deadline := time.Now().Add(healthTimeout)
	for {
		unhealthy := s.checkHealth(ctx)
		if len(unhealthy) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %s: %v", healthTimeout, unhealthy)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(4 * pollInterval):
		}
	}
	ready := time.Now()
	s.update(func(st *supervisorStatus) { st.Phase, st.Message, st.ReadyAt = supervisorRunning, "", &ready })
	return nil
}

type supervisor struct {
	dir    string
	state  clusterState
	spawn  chan spawnRequest
	client kubernetes.Interface
	// watchClient has no request timeout, for watches.
	watchClient kubernetes.Interface
	http        *http.Client

	// imagesImported reports the import of a real node's images;
	// imported is set once one succeeded. Only startup uses them.
	imagesImported chan error
	imported       bool

	mu      sync.Mutex
	status  supervisorStatus
	written []byte
}

type spawnRequest struct {
	cmd  *osexec.Cmd
	done chan error
}

// startImport imports the real node's images in the background, bounded by
// imageImportTimeout, and reports on imagesImported.
func (s *supervisor) startImport(ctx context.Context) {
	s.imagesImported = make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, imageImportTimeout)
		defer cancel()
		s.imagesImported <- importImages(ctx, s.state.Node.Images)
	}()
}

// spawner starts every child from one OS thread that lives as long as the
// supervisor: the kernel sends a child its parent-death signal when the
// thread that forked it ends, not the process.
func (s *supervisor) spawner() {
	runtime.LockOSThread()
	for req := range s.spawn {
		req.done <- req.cmd.Start()
	}
}

func (s *supervisor) setupClients() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(s.dir, kubeconfigFile))
	if err != nil {
		return fmt.Errorf("load admin kubeconfig: %w", err)
	}
	// Watches (the LoadBalancer controller's) last longer than any
	// request timeout.
	if s.watchClient, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	// Registering up to a thousand nodes must not wait on client-side
	// throttling.
	cfg.QPS, cfg.Burst = 500, 1000
	if s.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(s.dir, pkiDir, "ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData)
	if err != nil {
		return err
	}
	s.http = &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}
	return nil
}

// keepRunning runs c until ctx ends, restarting it with backoff whenever it
// exits.
//
// Its output goes to logs/<name>.log, rotated by size (see rotatingLog).
func (s *supervisor) keepRunning(ctx context.Context, c component) {
	var log *rotatingLog
	defer func() {
		if log != nil {
			log.Close()
		}
	}()
	backoff := minRestartBackoff
	for restarts := 0; ; restarts++ {
		started := time.Now()
		var err error
		if log == nil {
			log, err = openRotatingLog(filepath.Join(s.dir, logsDir, c.Name+".log"), maxLogSize)
		}
		if err == nil {
			err = s.runOnce(ctx, c, restarts, log)
		}
		if ctx.Err() != nil {
			return
		}
		s.update(func(st *supervisorStatus) {
			cs := st.Components[c.Name]
			cs.Running, cs.Healthy, cs.PID, cs.LastExit = false, false, 0, exitMessage(err)
			st.Components[c.Name] = cs
		})
		if time.Since(started) > time.Minute {
			backoff = minRestartBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxRestartBackoff)
	}
}

// runOnce runs c once, its stdout and stderr copied through a pipe into
// log. Wait returns once the output is copied; should a child of the
// component keep the pipe open after the component exits, it stops waiting
// after logWaitDelay.
func (s *supervisor) runOnce(ctx context.Context, c component, restarts int, log *rotatingLog) error {
	fmt.Fprintf(log, "=== ephemera: starting %s (restart %d) at %s\n", c.Name, restarts, time.Now().Format(time.RFC3339Nano))
	cmd := osexec.Command(c.Args[0], c.Args[1:]...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = logWaitDelay
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	req := spawnRequest{cmd: cmd, done: make(chan error, 1)}
	s.spawn <- req
	if err := <-req.done; err != nil {
		return err
	}
	s.update(func(st *supervisorStatus) {
		cs := st.Components[c.Name]
		cs.PID, cs.Running, cs.Restarts = cmd.Process.Pid, true, restarts
		st.Components[c.Name] = cs
	})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(stopGrace):
			_ = cmd.Process.Kill()
			return <-exited
		}
	}
}

func exitMessage(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	return err.Error()
}

// waitAPI waits until the API server is usable (see probe.APIUsable).
func (s *supervisor) waitAPI(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, apiStartTimeout)
	defer cancel()
	var lastErr error
	for {
		err := probe.APIUsable(ctx, s.client)
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver did not accept requests within %s: %w", apiStartTimeout, lastErr)
		case <-time.After(pollInterval):
		}
	}
}

// checkHealth probes every component's health URL, records the results
// (and how many checks in a row each failed) and returns the names of the
// unhealthy ones.
func (s *supervisor) checkHealth(ctx context.Context) []string {
	var unhealthy []string
	for _, c := range s.state.Components {
		s.mu.Lock()
		running := s.status.Components[c.Name].Running
		s.mu.Unlock()
		ok := running && (c.Health == "" || s.probe(ctx, c.Health))
		if !ok {
			unhealthy = append(unhealthy, c.Name)
		}
		s.update(func(st *supervisorStatus) {
			cs := st.Components[c.Name]
			cs.Healthy = ok
			if ok {
				cs.Failures = 0
			} else {
				cs.Failures++
			}
			st.Components[c.Name] = cs
		})
	}
	return unhealthy
}

func (s *supervisor) probe(ctx context.Context, url string) bool {
	if path, ok := strings.CutPrefix(url, "unix://"); ok {
		return dialUnix(ctx, path) == nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// watchHealth re-probes the components until ctx ends.
func (s *supervisor) watchHealth(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkHealth(ctx)
		}
	}
}

// update changes the status under the lock and writes it when it changed.
func (s *supervisor) update(fn func(*supervisorStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.status)
	b, err := json.Marshal(s.status)
	if err != nil || bytes.Equal(b, s.written) {
		return
	}
	if err := writeJSON(filepath.Join(s.dir, statusFile), s.status); err != nil {
		fmt.Fprintf(os.Stderr, "write status: %v\n", err)
		return
	}
	s.written = b
}
