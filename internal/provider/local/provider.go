package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/exec"
	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

// Name is the provider's registered name.
const Name = "local"

// StateDirEnv overrides the default state directory.
const StateDirEnv = "EPHEMERA_STATE_DIR"

// maxNameLength keeps state paths and node names short.
const maxNameLength = 40

// supervisorStartTimeout bounds the wait for a new supervisor to take over.
const supervisorStartTimeout = 10 * time.Second

// maxSimulatedNodes bounds the simulated nodes of one cluster.
const maxSimulatedNodes = 1000

var _ provider.Provider = (*Provider)(nil)

// Provider runs clusters as processes on this host.
type Provider struct {
	stateDir   string
	cache      kube.Cache
	supervisor []string
	now        func() time.Time
}

// Options configure a Provider.
type Options struct {
	// StateDir holds one dir per cluster.
	StateDir string
	// Cache holds the installed Kubernetes versions.
	Cache kube.Cache
	// Supervisor is the argv prefix that runs Supervise for a cluster dir
	// given as the last argument, normally this program with its hidden
	// supervise command.
	Supervisor []string
}

// New returns a local provider. A relative StateDir is made absolute: the
// supervisor and the components run in other working dirs.
func New(opts Options) *Provider {
	stateDir := opts.StateDir
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs
	}
	return &Provider{stateDir: stateDir, cache: opts.Cache, supervisor: opts.Supervisor, now: time.Now}
}

// DefaultStateDir returns $EPHEMERA_STATE_DIR, else $XDG_STATE_HOME/ephemera,
// else ~/.local/state/ephemera.
func DefaultStateDir() (string, error) {
	if d := os.Getenv(StateDirEnv); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "ephemera"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find state dir (set %s): %w", StateDirEnv, err)
	}
	return filepath.Join(home, ".local", "state", "ephemera"), nil
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return Name }

func (p *Provider) clustersDir() string { return filepath.Join(p.stateDir, "clusters") }

func (p *Provider) clusterDir(name string) string { return filepath.Join(p.clustersDir(), name) }

// ErrInvalidSpec wraps every rejection of a name or spec.
var ErrInvalidSpec = errors.New("invalid cluster")

// Validate checks a name and spec without touching anything, so that bad
// input changes nothing. It returns the installation the cluster would use.
func (p *Provider) Validate(name string, spec v1alpha1.ClusterTemplateSpec) (*kube.Installation, error) {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return nil, fmt.Errorf("%w name %q: %s", ErrInvalidSpec, name, errs[0])
	}
	if len(name) > maxNameLength {
		return nil, fmt.Errorf("%w name %q: must be no more than %d characters", ErrInvalidSpec, name, maxNameLength)
	}
	if spec.ProviderOrDefault() != v1alpha1.ProviderLocal {
		return nil, fmt.Errorf("%w: provider %q is not %q", ErrInvalidSpec, spec.Provider, Name)
	}
	if n := spec.Nodes.SimulatedCount(); n < 0 || n > maxSimulatedNodes {
		return nil, fmt.Errorf("%w: %d simulated nodes: want 0 to %d", ErrInvalidSpec, n, maxSimulatedNodes)
	}
	for field, cidr := range map[string]string{"serviceSubnet": spec.Network.ServiceSubnet, "podSubnet": spec.Network.PodSubnet} {
		if cidr == "" {
			continue
		}
		if _, err := firstServiceIP(cidr); err != nil {
			return nil, fmt.Errorf("%w: network.%s: %q is not a CIDR like 10.96.0.0/16", ErrInvalidSpec, field, cidr)
		}
	}
	version := spec.KubernetesVersion
	if version == "" {
		version = kube.DefaultVersion
	}
	return p.cache.Get(version)
}

// Create implements provider.Provider. It writes the cluster's certificates,
// kubeconfigs and plan, then starts a supervisor process that outlives the
// caller and brings the components up.
func (p *Provider) Create(ctx context.Context, name string, spec v1alpha1.ClusterTemplateSpec) (err error) {
	inst, err := p.Validate(name, spec)
	if err != nil {
		return err
	}
	dir := p.clusterDir(name)
	// The create lock tells others a create is under way; if this process
	// dies, the kernel drops it and the cluster shows as broken.
	lock, err := p.reserve(name)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	defer func() {
		if err != nil {
			_ = killAll(context.WithoutCancel(ctx), dir)
			_ = os.RemoveAll(dir)
		}
	}()

	spec.Provider = v1alpha1.ProviderLocal
	spec.KubernetesVersion = inst.Version
	if spec.Network.ServiceSubnet == "" {
		spec.Network.ServiceSubnet = defaultServiceSubnet
	}
	if spec.Network.PodSubnet == "" {
		spec.Network.PodSubnet = defaultPodSubnet
	}
	n := spec.Nodes.SimulatedCount()
	spec.Nodes.Simulated = &n

	now := p.now()
	ca, err := writePKI(dir, spec.Network.ServiceSubnet, now)
	if err != nil {
		return fmt.Errorf("create certificates: %w", err)
	}
	for _, d := range []string{logsDir, "etcd"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	err = p.allocatePorts(ctx, func(ps ports) error {
		endpoint := "https://" + localhost + ":" + strconv.Itoa(ps.APIServer)
		if err := writeKubeconfigs(dir, ca, name, endpoint, now); err != nil {
			return err
		}
		return writeJSON(filepath.Join(dir, clusterFile), clusterState{
			Name:              name,
			KubernetesVersion: inst.Version,
			Spec:              spec,
			CreatedAt:         now.UTC(),
			Endpoint:          endpoint,
			Ports:             ps,
			Components:        plan(dir, inst, ps, spec.Network.ServiceSubnet, spec.Network.PodSubnet),
		})
	})
	if err != nil {
		return fmt.Errorf("plan cluster %q: %w", name, err)
	}
	return p.startSupervisor(ctx, dir)
}

// reserve creates the cluster's dir with the create lock already held in
// it: the dir is made under a hidden name, locked, then renamed into place
// unless the name is taken. Nobody ever sees the dir without the lock.
func (p *Provider) reserve(name string) (*flock.Lock, error) {
	if err := os.MkdirAll(p.clustersDir(), 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	p.removeStaleReservations()
	tmp, err := os.MkdirTemp(p.clustersDir(), "."+name+reservationSuffix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, err
	}
	lock, err := flock.TryLock(filepath.Join(tmp, createLock))
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("lock new cluster dir: %w", err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, p.clusterDir(name), unix.RENAME_NOREPLACE); err != nil {
		lock.Unlock()
		_ = os.RemoveAll(tmp)
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return nil, fmt.Errorf("%w: %q (delete it first: ephemera delete cluster %s)", provider.ErrAlreadyExists, name, name)
		}
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	return lock, nil
}

// reservationSuffix marks a cluster dir that is being reserved.
const reservationSuffix = ".reserving-"

// removeStaleReservations removes reservations whose creator died between
// making and renaming them. A reservation is named after its creator's pid;
// a live creator's reservation is left alone, however briefly it is
// unlocked.
func (p *Provider) removeStaleReservations() {
	entries, _ := os.ReadDir(p.clustersDir())
	for _, e := range entries {
		name := e.Name()
		i := strings.LastIndex(name, reservationSuffix)
		if !strings.HasPrefix(name, ".") || i < 0 {
			continue
		}
		pid, _, _ := strings.Cut(name[i+len(reservationSuffix):], "-")
		if _, err := os.Stat(filepath.Join("/proc", pid)); err == nil {
			continue
		}
		dir := filepath.Join(p.clustersDir(), name)
		if !flock.Held(filepath.Join(dir, createLock)) {
			_ = os.RemoveAll(dir)
		}
	}
}

// startSupervisor starts the supervisor in its own session, detached from
// the caller's terminal, so the cluster outlives the caller and a Ctrl-C in
// the terminal does not reach it. It returns once the supervisor holds its
// lock, so no observer ever sees the cluster with neither lock held. On
// failure the caller kills what was started (see killAll).
func (p *Provider) startSupervisor(ctx context.Context, dir string) error {
	if len(p.supervisor) == 0 {
		return errors.New("no supervisor command configured")
	}
	logPath := filepath.Join(dir, logsDir, "supervisor.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	argv := append(append([]string{}, p.supervisor...), dir)
	cmd := osexec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	// Its pid is the session id of every process of the cluster.
	if err := os.WriteFile(filepath.Join(dir, supervisorPIDFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	exited := make(chan error, 1)
	// Reap it if it exits while we live; otherwise init adopts it.
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(supervisorStartTimeout)
	for !flock.Held(filepath.Join(dir, supervisorLock)) {
		select {
		case err := <-exited:
			return fmt.Errorf("supervisor exited at start (%v):\n%s", err, tailOf(logPath))
		case <-deadline:
			return fmt.Errorf("supervisor did not start within %s:\n%s", supervisorStartTimeout, tailOf(logPath))
		case <-ctx.Done():
			return fmt.Errorf("start supervisor: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// tailOf returns the end of a log file, for errors.
func tailOf(path string) string {
	b, _ := os.ReadFile(path)
	return exec.Tail(strings.TrimSpace(string(b)), 2048)
}

// Get implements provider.Provider.
func (p *Provider) Get(_ context.Context, name string) (*provider.Cluster, error) {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return nil, fmt.Errorf("%w: %q", provider.ErrNotFound, name)
	}
	dir := p.clusterDir(name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", provider.ErrNotFound, name)
	}
	return p.observe(name, dir), nil
}

// List implements provider.Provider.
func (p *Provider) List(_ context.Context) ([]provider.Cluster, error) {
	p.removeStaleReservations()
	entries, err := os.ReadDir(p.clustersDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	var out []provider.Cluster
	for _, e := range entries {
		if e.IsDir() && validation.IsDNS1123Label(e.Name()) == nil {
			out = append(out, *p.observe(e.Name(), filepath.Join(p.clustersDir(), e.Name())))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Kubeconfig implements provider.Provider.
func (p *Provider) Kubeconfig(ctx context.Context, name string) ([]byte, error) {
	if _, err := p.Get(ctx, name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(p.clusterDir(name), kubeconfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cluster %q has no kubeconfig: its create was interrupted; delete it and create it again", name)
	}
	return b, err
}

// Delete implements provider.Provider. It marks the cluster as deleting,
// waits for a create under way in another process to finish starting,
// kills every process of the cluster and removes its dir. Ports are free
// once the processes are gone.
func (p *Provider) Delete(ctx context.Context, name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return nil // no such cluster can exist
	}
	dir := p.clusterDir(name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	lockCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	deleting, err := flock.Acquire(lockCtx, filepath.Join(dir, deleteLock))
	if errors.Is(err, os.ErrNotExist) {
		return nil // deleted by someone else meanwhile
	}
	if err != nil {
		return fmt.Errorf("wait for another delete: %w", err)
	}
	defer deleting.Unlock()
	creating, err := flock.Acquire(lockCtx, filepath.Join(dir, createLock))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wait for its create to finish starting: %w", err)
	}
	defer creating.Unlock()
	killCtx, cancelKill := context.WithTimeout(ctx, 30*time.Second)
	defer cancelKill()
	if err := killAll(killCtx, dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
