package runner

import (
	"context"
	"errors"
	"fmt"
	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ephemera-dev/ephemera/internal/exec"
)

// Cluster is what a test learns of its cluster, through its environment.
type Cluster struct {
	// Name is the cluster's (or TestCluster's) name.
	Name string
	// Endpoint is the API server URL.
	Endpoint string
	// KubernetesVersion is the cluster's release.
	KubernetesVersion string
	// Kubeconfig is the path of an admin kubeconfig.
	Kubeconfig string
	// IngressAddress and IngressDomain are where the cluster's
	// LoadBalancer Services are reached, when it has them.
	IngressAddress, IngressDomain string
}

// Environment variables a test process gets.
const (
	EnvKubeconfig        = "KUBECONFIG"
	EnvClusterName       = "EPHEMERA_CLUSTER_NAME"
	EnvEndpoint          = "EPHEMERA_CLUSTER_ENDPOINT"
	EnvKubernetesVersion = "EPHEMERA_KUBERNETES_VERSION"
	EnvArtifacts         = "EPHEMERA_ARTIFACTS"
	EnvIngressAddress    = "EPHEMERA_INGRESS_ADDRESS"
	EnvIngressDomain     = "EPHEMERA_INGRESS_DOMAIN"
)

// Env returns the variables that tell a test about its cluster and where
// to write artefacts (JUnit XML among them).
func (c Cluster) Env(artifacts string) []string {
	return []string{
		EnvKubeconfig + "=" + c.Kubeconfig,
		EnvClusterName + "=" + c.Name,
		EnvEndpoint + "=" + c.Endpoint,
		EnvKubernetesVersion + "=" + c.KubernetesVersion,
		EnvArtifacts + "=" + artifacts,
		EnvIngressAddress + "=" + c.IngressAddress,
		EnvIngressDomain + "=" + c.IngressDomain,
	}
}

// IngressOf returns a cluster's ingress address and domain, or "".
func IngressOf(in *v1alpha1.IngressStatus) (address, domain string) {
	if in == nil {
		return "", ""
	}
	return in.Address, in.Domain
}

// LocalRun is a test command run on this host.
type LocalRun struct {
	// Argv is the command and its arguments.
	Argv []string
	// Cluster is put into the environment.
	Cluster Cluster
	// Artifacts is the dir the test writes reports to; the log goes there
	// too, as test.log.
	Artifacts string
	// Timeout bounds the run; zero means none.
	Timeout time.Duration
	// Out receives the output as it comes.
	Out io.Writer
}

// Outcome is how a run ended.
type Outcome struct {
	// ExitCode is the command's exit status; -1 when it did not start or
	// was killed.
	ExitCode int
	// Log is the file with the command's output.
	Log string
	// Result sums up the JUnit reports in the artefact dir.
	Result Result
	// Duration is how long the command ran.
	Duration time.Duration
	// TimedOut says the timeout killed it.
	TimedOut bool
}

// Passed reports a zero exit and no failed test case.
func (o Outcome) Passed() bool { return o.ExitCode == 0 && o.Result.Passed() }

// Run runs the command with the cluster in its environment, copies its
// output to Out and to the log, then reads the JUnit reports. A command that
// fails is an Outcome, not an error; errors are for what kept it from
// running or its reports from being read.
func (l LocalRun) Run(ctx context.Context) (Outcome, error) {
	if len(l.Argv) == 0 {
		return Outcome{ExitCode: -1}, errors.New("no test command given")
	}
	if err := os.MkdirAll(l.Artifacts, 0o755); err != nil {
		return Outcome{ExitCode: -1}, fmt.Errorf("create artefact dir: %w", err)
	}
	out := Outcome{Log: filepath.Join(l.Artifacts, "test.log")}
	logFile, err := os.Create(out.Log)
	if err != nil {
		return Outcome{ExitCode: -1}, err
	}
	defer logFile.Close()
	if l.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.Timeout)
		defer cancel()
	}
	cmd := exec.Command(ctx, l.Argv[0], l.Argv[1:]...)
	cmd.Env = append(os.Environ(), l.Cluster.Env(l.Artifacts)...)
	w := io.MultiWriter(logFile, l.Out)
	cmd.Stream = func(line string) { fmt.Fprintln(w, line) }
	start := time.Now()
	runErr := cmd.Run()
	out.Duration = time.Since(start)
	var exitErr *osexec.ExitError
	switch {
	case runErr == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		out.ExitCode, out.TimedOut = -1, true
	case errors.As(runErr, &exitErr):
		out.ExitCode = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// Killed by a signal: 128+signal, as a shell reports it.
			out.ExitCode = 128 + int(ws.Signal())
		}
	default:
		return Outcome{ExitCode: -1, Log: out.Log}, fmt.Errorf("run %s: %w", l.Argv[0], errors.Unwrap(runErr))
	}
	out.Result, err = ReadJUnitDir(l.Artifacts)
	return out, err
}
