// Package serve is the command that runs the ephemera server.
package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/controller/testcluster"
	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
	"github.com/ephemera-dev/ephemera/internal/server"
)

// perClusterMemory is what one idle cluster with a real node takes, with
// room to spare (docs/benchmarks.md); the default budget divides the free
// memory by it.
const perClusterMemory = 768 << 20

type options struct {
	kubeconfig          string
	instance            string
	metricsAddr         string
	healthAddr          string
	maxClusters         int
	maxClustersSet      bool
	maxPerNamespace     int
	maxHold             time.Duration
	maxTTL              time.Duration
	maxLifetime         time.Duration
	ownerLabel          string
	reapInterval        time.Duration
	keepManagementPlane bool
	leaderElect         bool
	leaderNamespace     string
	runnerNode          bool
	externalURL         string
	metricsCertDir      string
	artifactLinkTTL     time.Duration
}

// NewCommand returns the serve command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server: pools, leases and a fair queue of test clusters behind a Kubernetes API",
		Long: `Run the ephemera server. It keeps ClusterPools warm, binds TestClusters to
clusters (from a pool at once, or built from a ClusterTemplate), queues requests
beyond capacity in priority order, ends leases (ttl, heartbeat, hold, maxLifetime)
by deleting the cluster, and reaps clusters nothing owns.

It also runs TestRuns: each gets a cluster, runs its tests as a Job in the
management cluster with the cluster's kubeconfig mounted, keeps the log and
JUnit results, deletes or holds the cluster, and reports commit statuses to
GitHub or GitLab (docs/testruns.md).

Its store is a Kubernetes API:
  - embedded (default): a local cluster with one real node (where TestRun Jobs
    run; --runner-node=false leaves it out) whose data lives under
    --state-dir/server and survives restarts; its kubeconfig is written to
    --state-dir/server/kubeconfig, where the ephemera CLI finds it. Stopping serve
    stops it and keeps the data; clusters handed out keep running. TestRun
    artefacts are kept in --state-dir/server/artifacts and served under
    /artifacts/ on the metrics address: to bearer tokens that may get the
    run's TestRuns, and through the signed, expiring links on commit statuses.
  - operator mode (--kubeconfig): any existing cluster, with leader election.
    TestRun artefacts stay in the runner pods there; results come from the
    test's exit code. A second replica with the same --state-dir waits for
    the first and takes over when it dies; a server of the same --instance
    with another state dir is refused (ConfigMap ephemera-instance-INSTANCE).

Every lease is capped by --max-ttl, --max-lifetime and --max-hold, whatever
its spec or 'ephemera extend' asks; the TestCluster's LeaseCapped condition
names the cap. Bound clusters survive restarts of serve and of the host: they
are restarted on their data, never deleted at start (docs/server.md).

With --advertise-address HOST[:PORT], CI runners on other machines use the
server and its clusters: the management plane and every cluster share that one
TLS port of the host, routed by server name (CLUSTER.DOMAIN with --domain,
else CLUSTER.A-B-C-D.sslip.io), TLS passed through; the kubeconfigs handed out
(the server's, TestClusters' Secrets, the CLI's) name that address.

Clusters are created by the local provider under --state-dir, so
'ephemera get clusters' lists them too. /metrics and /healthz, /readyz are
served on the addresses below. A metrics address off loopback is HTTPS, and
/metrics there needs a bearer token allowed to get the non-resource URL
/metrics (docs/server.md, "Security").`,
		Example: `  ephemera serve &
  kubectl --kubeconfig ~/.local/state/ephemera/server/kubeconfig apply -f examples/server/template.yaml -f examples/server/pool.yaml
  ephemera create testcluster --pool ci --ttl 30m --label repo=charts --label pr=42
  ephemera get testclusters

  # operator mode on an existing cluster
  ephemera serve --kubeconfig mgmt.kubeconfig --max-clusters 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("leader-elect") {
				opts.leaderElect = opts.kubeconfig != ""
			}
			opts.maxClustersSet = cmd.Flags().Changed("max-clusters")
			return run(cmd.Context(), e, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.kubeconfig, "kubeconfig", "", "run on this existing cluster (operator mode) instead of the embedded management plane")
	f.StringVar(&opts.instance, "instance", "ephemera", "name of this server; its clusters are labelled with it and the reaper touches no others")
	f.StringVar(&opts.metricsAddr, "metrics-bind-address", "127.0.0.1:8080", "where /metrics listens; 0 turns it off")
	f.StringVar(&opts.healthAddr, "health-probe-bind-address", "127.0.0.1:8081", "where /healthz and /readyz listen; 0 turns them off")
	f.IntVar(&opts.maxClusters, "max-clusters", 0, "most clusters at once, in any state; 0 builds none and every request waits (default: free memory / 768 MiB)")
	f.IntVar(&opts.maxPerNamespace, "max-per-namespace", 0, "most bound TestClusters per namespace; more wait in the queue (0: no limit)")
	f.DurationVar(&opts.maxHold, "max-hold", testcluster.DefaultMaxHold, "longest hold past the last bind or heartbeat")
	f.DurationVar(&opts.maxTTL, "max-ttl", testcluster.DefaultMaxTTL, "longest spec.ttl honoured; a longer one (or an extend past it) is capped, and the TestCluster's LeaseCapped condition says so")
	f.DurationVar(&opts.maxLifetime, "max-lifetime", testcluster.DefaultMaxLifetime, "longest spec.maxLifetime honoured: no lease lasts longer after its TestCluster was created")
	f.StringVar(&opts.ownerLabel, "owner-label", "repo", "TestCluster label reported as the owner in ephemera_cluster_seconds_total")
	f.DurationVar(&opts.reapInterval, "reap-interval", time.Minute, "how often to look for clusters nothing owns")
	f.BoolVar(&opts.keepManagementPlane, "keep-management-plane", false, "leave the embedded management plane running when serve stops")
	f.BoolVar(&opts.leaderElect, "leader-elect", false, "elect one active replica (default: on with --kubeconfig)")
	f.StringVar(&opts.leaderNamespace, "leader-election-namespace", "default", "namespace of the leader election lease")
	f.BoolVar(&opts.runnerNode, "runner-node", true, "give a new embedded management plane a real node, where TestRun Jobs run (false: control plane only, ~250 MiB less)")
	f.StringVar(&opts.externalURL, "external-url", "", "URL of the metrics address as others reach it, for commit statuses' links to /artifacts/ (default http://METRICS-ADDRESS on loopback, else https://)")
	f.StringVar(&opts.metricsCertDir, "metrics-cert-dir", "", "dir with tls.crt and tls.key for a --metrics-bind-address off loopback (default: a self-signed certificate)")
	f.StringVar(&e.HostNetwork, "host-network", "", "host-side range real-node clusters take a /30 from (env "+local.HostNetworkEnv+", default "+local.DefaultHostNetwork+")")
	f.StringVar(&e.LBNetwork, "lb-network", "", "range clusters take a /28 of LoadBalancer addresses from, routed into real-node clusters, in Services' status only for simulated-node ones (env "+local.LBNetworkEnv+", default "+local.DefaultLBNetwork+")")
	f.StringSliceVar(&e.DNSUpstream, "dns-upstream", nil, "resolvers clusters' DNS forwards external names to, ADDR[:PORT], unless their template sets network.dnsUpstream (env "+local.DNSUpstreamEnv+"; default: the host's)")
	f.StringVar(&e.Domain, "domain", "", "make *.CLUSTER.DOMAIN resolve to each cluster's ingress address through ephemera's DNS forwarder, unless its template sets network.domain")
	f.StringVar(&e.AdvertiseAddress, "advertise-address", "", "make the management plane and every cluster reachable from other machines on HOST[:PORT] (an address of this host; port default 6443), one TLS port routed by server name CLUSTER.DOMAIN; kubeconfigs handed out name it")
	f.StringVar(&e.IngressDomainBase, "ingress-domain-base", "", "wildcard-DNS service ingress domains are named under without a domain (default "+local.DefaultIngressDomainBase+")")
	f.DurationVar(&opts.artifactLinkTTL, "artifact-link-ttl", server.DefaultArtifactLinkTTL, "how long the signed /artifacts/ links on commit statuses work")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options) error {
	if opts.maxClusters < 0 || opts.maxPerNamespace < 0 {
		return errors.New("--max-clusters and --max-per-namespace must be 0 or more")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--max-hold", opts.maxHold}, {"--max-ttl", opts.maxTTL}, {"--max-lifetime", opts.maxLifetime}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive, like 24h", d.flag)
		}
	}
	if opts.artifactLinkTTL <= 0 {
		return errors.New("--artifact-link-ttl must be positive, like 168h")
	}
	if !opts.maxClustersSet {
		opts.maxClusters = defaultMaxClusters()
	}
	log := newLogger(e.ErrOut)
	klog.SetLogger(log)
	rep := e.Progress()
	layout := e.ServerLayout()
	// The clusters handed out are the local provider's, under the state
	// dir, where 'ephemera get clusters' lists them.
	clusters, err := e.Providers().Get(local.Name)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	srvOpts := server.Options{
		Provider: clusters,
		Instance: opts.instance, MetricsAddr: opts.metricsAddr, HealthAddr: opts.healthAddr,
		LeaderElection: opts.leaderElect, LeaderElectionNamespace: opts.leaderNamespace,
		MaxClusters: opts.maxClusters, MaxPerNamespace: opts.maxPerNamespace,
		Limits:   testcluster.Limits{MaxHold: opts.maxHold, MaxTTL: opts.maxTTL, MaxLifetime: opts.maxLifetime},
		StateDir: e.StateDir, RegistryDir: e.RegistryPath(),
		OwnerLabel: opts.ownerLabel, ReapInterval: opts.reapInterval, Progress: rep, Log: log,
		ExternalURL: opts.externalURL, MetricsCertDir: opts.metricsCertDir, ArtifactLinkTTL: opts.artifactLinkTTL,
	}
	if srvOpts.ExternalURL == "" && opts.metricsAddr != "0" {
		srvOpts.ExternalURL = server.MetricsURL(opts.metricsAddr)
	}
	// One server per state dir, in every mode: its clusters live there.
	if err := os.MkdirAll(layout.Dir(), 0o700); err != nil {
		return err
	}
	lock, err := flock.TryLock(layout.Lock())
	switch {
	case errors.Is(err, flock.ErrLocked) && opts.kubeconfig != "":
		// A standby replica on the same host: it takes over when the one
		// holding the lock dies.
		rep.Start(fmt.Sprintf("Waiting for the state dir %s: another 'ephemera serve' holds it", e.StateDir))
		lock, err = flock.Acquire(ctx, layout.Lock())
		rep.End(err == nil)
		if err != nil {
			return fmt.Errorf("wait for the state dir %s: %w", e.StateDir, err)
		}
	case errors.Is(err, flock.ErrLocked):
		return fmt.Errorf("another 'ephemera serve' runs with state dir %s; stop it first, or use another --state-dir", e.StateDir)
	case err != nil:
		return fmt.Errorf("lock the state dir %s: %w", e.StateDir, err)
	}
	defer lock.Unlock()
	if opts.kubeconfig != "" {
		if srvOpts.Config, err = server.ConfigFromKubeconfig(opts.kubeconfig, nil); err != nil {
			return err
		}
		return server.Run(ctx, srvOpts)
	}

	mp, err := layout.ManagementPlane(e.Providers())
	if err != nil {
		return err
	}
	mp.RunnerNode = opts.runnerNode
	kubeconfig, err := mp.Ensure(ctx, rep)
	if err != nil {
		return err
	}
	if !opts.keepManagementPlane {
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			log.Info("Stopping the management plane (its data is kept)")
			if err := mp.Stop(stopCtx); err != nil {
				log.Error(err, "Stopping the management plane")
			}
		}()
	}
	switch addr, ok, err := mp.GatewayAddress(); {
	case err != nil:
		return err
	case ok:
		// TestRun pods run on the management plane's node and keep their
		// artefacts in a dir of the server it shares.
		srvOpts.Gateway = &server.Gateway{Addr: addr, Log: log.WithName("gateway")}
		srvOpts.ArtifactsRoot = layout.Artifacts()
	default:
		log.Info("The management plane has no node: TestRuns will wait for one. Give it one by deleting " + layout.Dir() + " (this loses the server's objects) and starting serve again")
	}
	fmt.Fprintf(e.ErrOut, "Management plane ready. Use it with:\n  kubectl --kubeconfig %s get testclusters,clusterpools,clustertemplates\n", mp.KubeconfigPath)
	if srvOpts.Config, err = server.ConfigFromKubeconfig("", kubeconfig); err != nil {
		return err
	}
	if err := server.Run(ctx, srvOpts); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// defaultMaxClusters divides the available memory by perClusterMemory.
func defaultMaxClusters() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 4
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				break
			}
			return max(1, int(kb<<10/perClusterMemory))
		}
	}
	return 4
}

// newLogger logs one line per message: time, level, message, then the
// key/value pairs as JSON.
func newLogger(w io.Writer) logr.Logger {
	return zap.New(zap.WriteTo(w), zap.ConsoleEncoder(func(c *zapcore.EncoderConfig) {
		c.EncodeTime = zapcore.ISO8601TimeEncoder
	}))
}
