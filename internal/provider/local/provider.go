package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/exec"
	"github.com/ephemera-dev/ephemera/internal/failpoint"
	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/local/sniroute"
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
	stateDir    string
	cache       kube.Cache
	supervisor  []string
	hostNetwork netip.Prefix
	// hostNetworkErr is why Options.HostNetwork was refused; it fails
	// every create of a real-node cluster.
	hostNetworkErr error
	durable        bool
	// lbNetwork is where clusters take their LoadBalancer ranges from;
	// lbNetworkErr is why Options.LBNetwork was refused.
	lbNetwork    netip.Prefix
	lbNetworkErr error
	// advertise is Options.AdvertiseAddress parsed; advertiseErr is why
	// it was refused.
	advertise    netip.AddrPort
	advertiseErr error
	net          NetworkOptions
	// opts are the options New was given, StateDir made absolute.
	opts Options
	now  func() time.Time
	// leafValidity is how long new leaf certificates are valid; zero
	// means pki's default, a year. Tests shorten it.
	leafValidity time.Duration
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
	// HostNetwork is the range real-node clusters take their host-side
	// addresses from; empty means $EPHEMERA_HOST_NETWORK, else
	// DefaultHostNetwork.
	HostNetwork string
	// Durable makes etcd sync every write to disk, for clusters whose data
	// must survive a host crash, like a server's management plane. Without
	// it etcd runs with --unsafe-no-fsync: faster, and a throwaway cluster
	// loses nothing it needs. A cluster created before keeps what its plan
	// says until Restart, which drops --unsafe-no-fsync for a durable
	// provider.
	Durable bool
	// LBNetwork is the range clusters with a real node, or with simulated
	// nodes only, take their LoadBalancer addresses from, a /28 each;
	// empty means $EPHEMERA_LB_NETWORK, else DefaultLBNetwork.
	LBNetwork string
	// Network are defaults for the clusters' network settings.
	Network NetworkOptions
	// AdvertiseAddress, HOST[:PORT], makes every cluster's API server
	// reachable from other machines on that one address of the host,
	// routed by TLS server name (see advertise.go). Empty: clusters are
	// reached on their own addresses, from this host.
	AdvertiseAddress string
	// AdvertiseWith are other state dirs whose clusters share the
	// advertised address: every supervisor routes their clusters too (a
	// server's clusters and its management plane).
	AdvertiseWith []string
	// RegistryDir is the host's registry cache (see package registry):
	// real-node clusters start it if it is not running and pull through
	// it. Empty: they pull from registries directly.
	RegistryDir string
	// Warnf reports what goes wrong without failing a create (a registry
	// cache that does not start); nil drops it.
	Warnf func(format string, args ...any)
}

// NetworkOptions are a provider's defaults for what a template's network
// section leaves unset.
type NetworkOptions struct {
	// DNSUpstream replaces the host's resolvers (env
	// EPHEMERA_DNS_UPSTREAM, comma-separated).
	DNSUpstream []string
	// Domain makes *.<cluster>.<Domain> resolve to a cluster's ingress
	// address through ephemera's DNS forwarder.
	Domain string
	// IngressDomainBase is the wildcard-DNS service whose names map to
	// addresses (like 10-251-0-1.sslip.io), for clusters without Domain.
	// Defaults to DefaultIngressDomainBase.
	IngressDomainBase string
	// ReachClusters lets the provider's clusters open connections to
	// other clusters: a server's management plane, whose runner pods
	// reach the clusters' API servers and ingress.
	ReachClusters bool
}

// DNSUpstreamEnv overrides the host's resolvers as the upstream of the
// clusters' DNS, like --dns-upstream.
const DNSUpstreamEnv = "EPHEMERA_DNS_UPSTREAM"

// DefaultIngressDomainBase is the wildcard-DNS service ingress domains are
// named under by default.
const DefaultIngressDomainBase = "sslip.io"

// New returns a local provider. A relative StateDir is made absolute: the
// supervisor and the components run in other working dirs.
func New(opts Options) *Provider {
	stateDir := opts.StateDir
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs
	}
	hostNetwork := opts.HostNetwork
	if hostNetwork == "" {
		hostNetwork = cmp.Or(os.Getenv(HostNetworkEnv), DefaultHostNetwork)
	}
	opts.StateDir = stateDir
	p := &Provider{stateDir: stateDir, cache: opts.Cache, supervisor: opts.Supervisor, durable: opts.Durable, opts: opts, now: time.Now}
	p.hostNetwork, p.hostNetworkErr = ParseHostNetwork(hostNetwork)
	p.lbNetwork, p.lbNetworkErr = ParseLBNetwork(cmp.Or(opts.LBNetwork, os.Getenv(LBNetworkEnv), DefaultLBNetwork))
	p.net = opts.Network
	if len(p.net.DNSUpstream) == 0 {
		if env := os.Getenv(DNSUpstreamEnv); env != "" {
			p.net.DNSUpstream = strings.Split(env, ",")
		}
	}
	p.net.IngressDomainBase = cmp.Or(p.net.IngressDomainBase, DefaultIngressDomainBase)
	if opts.AdvertiseAddress != "" {
		addrs, err := hostAddresses()
		if err == nil {
			p.advertise, err = ParseAdvertise(opts.AdvertiseAddress, addrs)
		}
		p.advertiseErr = err
	}
	return p
}

// Options returns the options p was made with, StateDir made absolute. A
// provider made from them with another StateDir runs its clusters as p
// does: same Kubernetes cache, supervisor and host network.
func (p *Provider) Options() Options {
	o := p.opts
	o.Supervisor = slices.Clone(o.Supervisor)
	return o
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

// errInvalid starts the message of every refusal of a name or spec; it
// matches provider.ErrInvalidSpec.
var errInvalid = invalidSpec(errors.New("invalid cluster"))

// invalidSpec marks err as a refusal of the name or spec: it keeps err's
// message and matches both err and provider.ErrInvalidSpec.
func invalidSpec(err error) error { return specError{err} }

type specError struct{ err error }

func (e specError) Error() string { return e.err.Error() }

func (e specError) Unwrap() []error { return []error{e.err, provider.ErrInvalidSpec} }

// Validate checks a name and spec without touching anything, so that bad
// input changes nothing. It returns the installation the cluster would use.
// Every refusal wraps provider.ErrInvalidSpec.
func (p *Provider) Validate(name string, spec v1alpha1.ClusterTemplateSpec) (*kube.Installation, error) {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return nil, fmt.Errorf("%w name %q: %s", errInvalid, name, errs[0])
	}
	if len(name) > maxNameLength {
		return nil, fmt.Errorf("%w name %q: must be no more than %d characters", errInvalid, name, maxNameLength)
	}
	if spec.ProviderOrDefault() != v1alpha1.ProviderLocal {
		return nil, fmt.Errorf("%w: provider %q is not %q", errInvalid, spec.Provider, Name)
	}
	if n := spec.Nodes.SimulatedCount(); n < 0 || n > maxSimulatedNodes {
		return nil, fmt.Errorf("%w: %d simulated nodes: want 0 to %d", errInvalid, n, maxSimulatedNodes)
	}
	realNodes := spec.Nodes.RealCount()
	if realNodes < 0 || realNodes > 1 {
		return nil, fmt.Errorf("%w: %d real nodes: the local provider runs 0 or 1 (add simulated nodes for more)", errInvalid, realNodes)
	}
	subnets := map[string]string{"serviceSubnet": defaultServiceSubnet, "podSubnet": defaultPodSubnet}
	for field, cidr := range map[string]string{"serviceSubnet": spec.Network.ServiceSubnet, "podSubnet": spec.Network.PodSubnet} {
		if cidr == "" {
			continue
		}
		if _, err := firstServiceIP(cidr); err != nil {
			return nil, fmt.Errorf("%w: network.%s: %q is not a CIDR like 10.96.0.0/16", errInvalid, field, cidr)
		}
		subnets[field] = cidr
	}
	version := spec.KubernetesVersion
	if version == "" {
		version = kube.DefaultVersion
	}
	if err := kube.ValidateVersion(version); err != nil {
		return nil, invalidSpec(err)
	}
	inst, err := p.cache.Get(version)
	if errors.Is(err, kube.ErrNotInstalled) {
		return nil, invalidSpec(err)
	}
	if err != nil {
		return nil, err
	}
	if p.advertiseErr != nil {
		return nil, fmt.Errorf("%w: %w", errInvalid, p.advertiseErr)
	}
	for _, h := range spec.Network.InsecureRegistries {
		if err := checkRegistryHostPort(h); err != nil {
			return nil, fmt.Errorf("%w: network.insecureRegistries: %w", errInvalid, err)
		}
	}
	if realNodes == 0 && len(spec.Network.InsecureRegistries) > 0 {
		return nil, fmt.Errorf("%w: network.insecureRegistries are for a real node's image pulls: this cluster has no real node", errInvalid)
	}
	if realNodes == 0 && len(spec.Network.Ports) > 0 {
		return nil, fmt.Errorf("%w: network.ports forward host ports to a real node's ingress address: this cluster has no real node", errInvalid)
	}
	if statusLB(spec) && p.lbNetworkErr != nil {
		return nil, fmt.Errorf("%w: %w", errInvalid, p.lbNetworkErr)
	}
	if realNodes > 0 {
		if p.hostNetworkErr != nil {
			return nil, fmt.Errorf("%w: %w", errInvalid, p.hostNetworkErr)
		}
		if p.lbNetworkErr != nil {
			return nil, fmt.Errorf("%w: %w", errInvalid, p.lbNetworkErr)
		}
		if p.lbNetwork.Overlaps(p.hostNetwork) {
			return nil, fmt.Errorf("%w: the LoadBalancer network %s overlaps the host network %s: choose another with --lb-network or %s", errInvalid, p.lbNetwork, p.hostNetwork, LBNetworkEnv)
		}
		if _, err := decideNetwork(spec.Network, p.net); err != nil {
			return nil, fmt.Errorf("%w: %w", errInvalid, err)
		}
		if _, err := nthServiceIP(subnets["serviceSubnet"], 10); err != nil {
			return nil, fmt.Errorf("%w: network.serviceSubnet %s has no 10th address for cluster DNS: use a /28 or larger", errInvalid, subnets["serviceSubnet"])
		}
		for field, cidr := range subnets {
			if prefix, _ := netip.ParsePrefix(cidr); prefix.Overlaps(p.hostNetwork) {
				return nil, fmt.Errorf("%w: network.%s %s overlaps the host network %s real nodes get their addresses from: choose another subnet, or set %s", errInvalid, field, cidr, p.hostNetwork, HostNetworkEnv)
			}
			if prefix, _ := netip.ParsePrefix(cidr); prefix.Overlaps(p.lbNetwork) {
				return nil, fmt.Errorf("%w: network.%s %s overlaps the LoadBalancer network %s: choose another subnet, or another --lb-network (%s)", errInvalid, field, cidr, p.lbNetwork, LBNetworkEnv)
			}
		}
		if err := checkRealNodeHost(inst); err != nil {
			return nil, invalidSpec(err)
		}
	}
	return inst, nil
}

// Create implements provider.Provider. It writes the cluster's certificates,
// kubeconfigs and plan, then starts a supervisor process that outlives the
// caller and brings the components up.
func (p *Provider) Create(ctx context.Context, name string, spec v1alpha1.ClusterTemplateSpec, opts provider.CreateOptions) (err error) {
	inst, err := p.Validate(name, spec)
	if err != nil {
		return err
	}
	dir := p.clusterDir(name)
	var settings netSettings
	var portFiles []*os.File
	if spec.Nodes.RealCount() > 0 {
		if settings, err = decideNetwork(spec.Network, p.net); err != nil {
			return fmt.Errorf("%w: %w", errInvalid, err)
		}
		// Host ports first: a busy one fails before anything exists.
		if settings.HostPorts, portFiles, err = bindPorts(settings.HostPorts); err != nil {
			return fmt.Errorf("create cluster %q: %w", name, err)
		}
		defer closeFiles(portFiles)
	}
	// The advertised address too: a port another program holds fails
	// the create before anything exists.
	var advertiseFile *os.File
	if p.advertise.IsValid() {
		if advertiseFile, err = sniroute.Listen(p.advertise); err != nil {
			return fmt.Errorf("create cluster %q: %w", name, err)
		}
		defer advertiseFile.Close()
	}
	// The create lock tells others a create is under way; if this process
	// dies, the kernel drops it and the cluster shows as broken.
	lock, err := p.reserve(name, opts.Labels)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	defer func() {
		if err != nil {
			cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = teardown(cleanupCtx, dir)
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
	realNodes, sim := spec.Nodes.RealCount(), spec.Nodes.SimulatedCount()
	spec.Nodes.Real, spec.Nodes.Simulated = &realNodes, &sim

	st := clusterState{
		Name:              name,
		KubernetesVersion: inst.Version,
		Spec:              spec,
		CreatedAt:         p.now().UTC(),
	}
	var reg *nodeRegistry
	if realNodes > 0 && p.opts.RegistryDir != "" {
		// Before the network lock: the first create may start the cache.
		var regErr error
		if reg, regErr = planRegistry(ctx, p.opts.RegistryDir, p.supervisor[0], spec.Network.InsecureRegistries); regErr != nil {
			if reg == nil {
				p.warnf("cluster %q pulls from registries directly, not through the host's registry cache: %v", name, regErr)
			} else {
				p.warnf("the registry cache did not start, cluster %q pulls from registries directly until it does: %v", name, regErr)
			}
		}
	}
	if p.advertise.IsValid() {
		st.Advertise = &advertised{Address: p.advertise, ServerName: apiServerName(name, strings.TrimSuffix(strings.ToLower(cmp.Or(spec.Network.Domain, p.net.Domain)), "."), p.net.IngressDomainBase, p.advertise.Addr())}
		for _, d := range p.opts.AdvertiseWith {
			if abs, err := filepath.Abs(d); err == nil {
				st.Advertise.RouteAlso = append(st.Advertise.RouteAlso, filepath.Join(abs, "clusters"))
			}
		}
	}
	if realNodes > 0 {
		// The network comes first: its addresses go into the certificates.
		// The lock is held until the veth has its address, which is what
		// other creates look at.
		unlock, err := lockHostNetwork(ctx)
		if err != nil {
			return err
		}
		defer unlock()
		nn, err := allocateNodeNetwork(dir, p.hostNetwork)
		if err != nil {
			return fmt.Errorf("create cluster %q: %w", name, err)
		}
		lb, err := allocateLB(p.lbNetwork, p.clustersDir())
		if err != nil {
			return fmt.Errorf("create cluster %q: %w", name, err)
		}
		dns, err := nthServiceIP(spec.Network.ServiceSubnet, 10)
		if err != nil {
			return err
		}
		keep := []string{inst.Dir}
		if reg != nil {
			f, port, err := bindRegistryLink(nn.HostIP, registryLinkPort)
			if err != nil {
				return fmt.Errorf("create cluster %q: %w", name, err)
			}
			defer f.Close()
			reg.Port = port
			portFiles = append(portFiles, f)
			keep = append(keep, reg.Dir)
		}
		st.Node = &realNode{
			Network:            nn,
			Keep:               keep,
			Images:             []string{inst.Image(kube.PauseImage), inst.Image(kube.CoreDNSImage)},
			DNS:                dns,
			LB:                 lb,
			IngressDomain:      ingressDomain(name, settings.LocalDomain, settings.DomainBase, ingressAddress(lb)),
			LocalDomain:        settings.LocalDomain,
			DNSUpstreams:       settings.DNSUpstreams,
			HostPorts:          settings.HostPorts,
			ReachClusters:      settings.Reach,
			Registry:           reg,
			InsecureRegistries: spec.Network.InsecureRegistries,
		}
		st.Ports = netnsPorts
		st.Endpoint = "https://" + net.JoinHostPort(nn.NodeIP.String(), strconv.Itoa(st.Ports.APIServer))
	}
	if err := p.planCluster(ctx, dir, inst, &st); err != nil {
		return fmt.Errorf("plan cluster %q: %w", name, err)
	}
	if st.Node == nil {
		_, err := p.startSupervisor(ctx, dir, optionalFile(advertiseFile), false)
		return err
	}
	return p.startRealNode(ctx, dir, st, append(portFiles, optionalFile(advertiseFile)...))
}

// optionalFile returns f as a list of files, none when f is nil.
func optionalFile(f *os.File) []*os.File {
	if f == nil {
		return nil
	}
	return []*os.File{f}
}

// startRealNode starts the supervisor of a real-node cluster in a new
// network namespace with its host-side sockets, connects the namespace to
// the host and sets up the host's side: the LoadBalancer route and the
// firewall rules. The caller holds the host-wide network lock.
func (p *Provider) startRealNode(ctx context.Context, dir string, st clusterState, portFiles []*os.File) error {
	files, err := hostSideFiles(st.Node, portFiles)
	if err != nil {
		return err
	}
	defer closeFiles(files[:firstPortFD-3])
	pid, err := p.startSupervisor(ctx, dir, files, true)
	if err != nil {
		return err
	}
	if err := attachNodeNetwork(ctx, st.Node.Network, pid); err != nil {
		return err
	}
	if st.Node.LB.IsValid() {
		if err := addLBRoute(st.Node.Network, st.Node.LB); err != nil {
			return err
		}
	}
	plan := firewallPlan{Name: st.Name, Network: st.Node.Network, ReachClusters: st.Node.ReachClusters}
	for _, cidr := range []string{st.Spec.Network.ServiceSubnet, st.Spec.Network.PodSubnet} {
		if p, err := netip.ParsePrefix(cidr); err == nil {
			plan.Internal = append(plan.Internal, p.Masked())
		}
	}
	return setupHostFirewall(ctx, plan)
}

// planCluster writes certificates, kubeconfigs and the final plan. A
// cluster without a real node takes free ports of the host first.
func (p *Provider) planCluster(ctx context.Context, dir string, inst *kube.Installation, st *clusterState) error {
	var nodeIP netip.Addr
	if st.Node != nil {
		nodeIP = st.Node.Network.NodeIP
	}
	var names []string
	if st.Advertise != nil {
		names = append(names, st.Advertise.ServerName)
	}
	ca, err := writePKI(dir, st.Spec.Network.ServiceSubnet, nodeIP, names, st.CreatedAt, p.leafValidity)
	if err != nil {
		return fmt.Errorf("create certificates: %w", err)
	}
	for _, d := range []string{logsDir, "etcd"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	write := func() error {
		if err := writeKubeconfigs(dir, ca, st.Name, st.Endpoint, st.Node != nil, st.CreatedAt, p.leafValidity); err != nil {
			return err
		}
		apiAddr := localhost
		if st.Node != nil {
			apiAddr = st.Node.Network.NodeIP.String()
			if err := writeNodeConfig(dir, *st.Node, st.Node.Network.Cgroup, st.Spec.Network.PodSubnet); err != nil {
				return fmt.Errorf("write node configuration: %w", err)
			}
		}
		st.Components = plan(dir, inst, st.Ports, apiAddr, st.Spec.Network.ServiceSubnet, st.Spec.Network.PodSubnet, p.durable)
		if st.Spec.Nodes.SimulatedCount() == 0 {
			st.Components = slices.DeleteFunc(st.Components, func(c component) bool { return c.Name == kube.Kwok })
		}
		if st.Node != nil {
			st.Components = append(st.Components, nodeComponents(dir, inst, *st.Node, st.Name)...)
		}
		return writeJSON(filepath.Join(dir, clusterFile), st)
	}
	if st.Node != nil {
		return write()
	}
	return p.allocatePorts(ctx, func(ps ports) error {
		st.Ports = ps
		st.Endpoint = "https://" + localhost + ":" + strconv.Itoa(ps.APIServer)
		if statusLB(st.Spec) {
			// Under the ports lock, as the ports: the plan shows the
			// range to the next create of this state dir.
			lb, err := allocateStatusLB(p.lbNetwork, p.clustersDir())
			if err != nil {
				return err
			}
			st.LB = lb
		}
		return write()
	})
}

// statusLB reports whether a cluster of spec gets a LoadBalancer range
// whose addresses show in Services' status only: it has simulated nodes
// and no real one. (A cluster without nodes gets none: nothing could run
// behind its Services.)
func statusLB(spec v1alpha1.ClusterTemplateSpec) bool {
	return spec.Nodes.RealCount() == 0 && spec.Nodes.SimulatedCount() > 0
}

// reserve creates the cluster's dir with the create lock already held in
// it: the dir is made under a hidden name, locked, then renamed into place
// unless the name is taken. Nobody ever sees the dir without the lock.
//
// The labels are written before the dir appears, so whoever finds a
// cluster, even one whose creator died at once, knows whose it is.
func (p *Provider) reserve(name string, labels map[string]string) (*flock.Lock, error) {
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
	if len(labels) > 0 {
		if err := writeJSON(filepath.Join(tmp, labelsFile), labels); err != nil {
			lock.Unlock()
			_ = os.RemoveAll(tmp)
			return nil, fmt.Errorf("write cluster labels: %w", err)
		}
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
// making and renaming them, and dirs that a delete moved away and died
// before removing (their processes were stopped before the move). Both are
// named after their maker's pid; a live maker's dir is left alone, however
// briefly it is unlocked.
func (p *Provider) removeStaleReservations() {
	entries, _ := os.ReadDir(p.clustersDir())
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, ".") {
			continue
		}
		suffix := reservationSuffix
		i := strings.LastIndex(name, suffix)
		if i < 0 {
			suffix = trashSuffix
			if i = strings.LastIndex(name, suffix); i < 0 {
				continue
			}
		}
		pid, _, _ := strings.Cut(name[i+len(suffix):], "-")
		if _, err := os.Stat(filepath.Join("/proc", pid)); err == nil {
			continue
		}
		dir := filepath.Join(p.clustersDir(), name)
		if suffix == trashSuffix || !flock.Held(filepath.Join(dir, createLock)) {
			_ = os.RemoveAll(dir)
		}
	}
}

// startSupervisor starts the supervisor in its own session, detached from
// the caller's terminal, so the cluster outlives the caller and a Ctrl-C in
// the terminal does not reach it. It returns once the supervisor holds its
// lock, so no observer ever sees the cluster with neither lock held. On
// failure the caller kills what was started (see killAll).
// It returns the supervisor's pid.
//
// The supervisor of a real-node cluster starts in a new network namespace,
// the cluster's, and a new mount namespace (see prepareNode), with files:
// its host-side sockets (see hostSideFiles). Otherwise it runs in the
// host's namespaces, with the advertised address's socket as its only file
// when the cluster has one.
func (p *Provider) startSupervisor(ctx context.Context, dir string, files []*os.File, realNode bool) (int, error) {
	if len(p.supervisor) == 0 {
		return 0, errors.New("no supervisor command configured")
	}
	logPath := filepath.Join(dir, logsDir, "supervisor.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logFile.Close()
	argv := append(append([]string{}, p.supervisor...), dir)
	attr := &syscall.SysProcAttr{Setsid: true}
	if realNode {
		attr.Cloneflags = syscall.CLONE_NEWNET
		// Unshared rather than cloned: Go then makes every mount
		// private, so nothing the cluster mounts reaches the host.
		attr.Unshareflags = syscall.CLONE_NEWNS
	}
	cmd := osexec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = attr
	cmd.ExtraFiles = files
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start supervisor: %w", err)
	}
	// Its pid is the session id of every process of the cluster.
	if err := os.WriteFile(filepath.Join(dir, supervisorPIDFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return 0, err
	}
	exited := make(chan error, 1)
	// Reap it if it exits while we live; otherwise init adopts it.
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(supervisorStartTimeout)
	for !flock.Held(filepath.Join(dir, supervisorLock)) {
		select {
		case err := <-exited:
			return 0, fmt.Errorf("supervisor exited at start (%w):\n%s", err, tailOf(logPath))
		case <-deadline:
			return 0, fmt.Errorf("supervisor did not start within %s:\n%s", supervisorStartTimeout, tailOf(logPath))
		case <-ctx.Done():
			return 0, fmt.Errorf("start supervisor: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	return cmd.Process.Pid, nil
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
	if err != nil {
		return nil, err
	}
	var st clusterState
	if err := readJSON(filepath.Join(p.clusterDir(name), clusterFile), &st); err == nil && st.Advertise != nil {
		return advertiseKubeconfig(b, *st.Advertise, resolvesTo)
	}
	return b, nil
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
	return teardown(killCtx, dir)
}

// teardown stops every process of the cluster in dir (pods included),
// removes what it made on the host (cgroups, network namespace, veth; its
// mounts went with its mount namespace) and then its dir. Everything it
// looks for derives from dir, so it works on a cluster whose create died
// at any point, and again after a teardown that failed halfway.
func teardown(ctx context.Context, dir string) error {
	if err := stopCluster(ctx, dir); err != nil {
		return err
	}
	failpoint.Inject(failpoint.LocalDeleteAfterStop)
	return removeDir(dir)
}

// trashSuffix marks a cluster dir that a delete moved away to remove it.
const trashSuffix = ".deleting-"

// removeDir moves a stopped cluster's dir away under a hidden name, then
// removes it. Once moved, every path into the cluster's dir fails, so
// nothing (a SetLabels) can add a file to it while it is being removed,
// which would make the removal fail; only a call that looked the path up
// just before the move can, once, hence the retries. A dir left behind by
// a delete that died is removed by the next List (see
// removeStaleReservations).
func removeDir(dir string) error {
	prefix := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+trashSuffix+strconv.Itoa(os.Getpid())+"-")
	for {
		trash := prefix + strconv.FormatUint(rand.Uint64(), 36)
		err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, trash, unix.RENAME_NOREPLACE)
		switch {
		case errors.Is(err, unix.EEXIST):
			continue
		case errors.Is(err, unix.ENOENT):
			return nil
		case err != nil:
			return fmt.Errorf("move %s away to remove it: %w", dir, err)
		}
		for try := 1; ; try++ {
			err := os.RemoveAll(trash)
			if err == nil || try == 5 || !errors.Is(err, unix.ENOTEMPTY) {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
