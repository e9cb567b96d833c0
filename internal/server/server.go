// Package server wires `ephemera serve`: the embedded management plane or
// an existing cluster, the CRDs, and one controller-runtime manager running
// the controllers, the reaper, /metrics and health probes.
package server

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/artifact"
	"github.com/ephemera-dev/ephemera/internal/controller/admission"
	"github.com/ephemera-dev/ephemera/internal/controller/metrics"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/controller/reaper"
	"github.com/ephemera-dev/ephemera/internal/controller/testcluster"
	"github.com/ephemera-dev/ephemera/internal/controller/testrun"
	"github.com/ephemera-dev/ephemera/internal/progress"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/registry"
)

// Options configure a server.
type Options struct {
	// Config reaches the management cluster.
	Config *rest.Config
	// Provider builds the clusters the server hands out.
	Provider provider.Provider
	// Instance names this server; its clusters carry it as a label, and
	// the reaper only touches clusters with it.
	Instance string
	// MetricsAddr and HealthAddr are where /metrics and /healthz, /readyz
	// listen; "0" turns one off. A MetricsAddr other than a loopback one
	// is served with TLS, and /metrics with authentication (see
	// MetricsSecure).
	MetricsAddr, HealthAddr string
	// MetricsCertDir holds tls.crt and tls.key for a MetricsAddr served
	// with TLS; "" (or a dir without them) means a self-signed certificate.
	MetricsCertDir string
	// LeaderElection makes replicas elect one active server, in
	// LeaderElectionNamespace.
	LeaderElection          bool
	LeaderElectionNamespace string
	// MaxClusters is the capacity budget (see admission.Reconciler).
	MaxClusters int
	// MaxPerNamespace bounds the TestClusters of one namespace; 0 means no
	// limit.
	MaxPerNamespace int
	// Limits cap every lease (--max-hold, --max-ttl, --max-lifetime).
	Limits testcluster.Limits
	// StateDir is where this server's clusters live on this host; with
	// Instance it is recorded on the management cluster, so that two
	// servers with different state dirs never manage one instance.
	StateDir string
	// RegistryDir is the host's registry cache, whose counters /metrics
	// shows (ephemera_registry_*); empty shows none.
	RegistryDir string
	// OwnerLabel is the TestCluster label reported as the owner in the
	// cluster-seconds metric.
	OwnerLabel string
	// ReapInterval is how often orphans are looked for.
	ReapInterval time.Duration
	// Gateway, when set, makes test clusters reachable from TestRun pods
	// (embedded mode), through the management plane node's route to the
	// host.
	Gateway *Gateway
	// ArtifactsRoot, when set, is a host dir the management cluster's node
	// shares, where TestRuns keep their artefacts; it is served under
	// /artifacts/ on the metrics address.
	ArtifactsRoot string
	// ExternalURL is how commit statuses link to the metrics address
	// (for /artifacts/); "" links nothing.
	ExternalURL string
	// ArtifactLinkTTL is how long the signed artefacts links on commit
	// statuses work; 0 means DefaultArtifactLinkTTL.
	ArtifactLinkTTL time.Duration
	// Progress reports start-up steps.
	Progress progress.Reporter
	// Log receives the controllers' logs.
	Log logr.Logger
}

// Scheme returns the scheme the server's clients use.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = apiextensionsv1.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// ConfigFromKubeconfig reads a kubeconfig file, or bytes when path is empty.
func ConfigFromKubeconfig(path string, data []byte) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
	} else {
		cfg, err = clientcmd.RESTConfigFromKubeConfig(data)
	}
	if err != nil {
		return nil, fmt.Errorf("read management cluster kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, nil
}

// Run installs the CRDs, adopts the clusters this server created before,
// and runs the controllers until ctx ends.
func Run(ctx context.Context, opts Options) error {
	rep := opts.Progress
	if rep == nil {
		rep = progress.Discard
	}
	ctrl.SetLogger(opts.Log)
	scheme := Scheme()
	rep.Start("Installing the ephemera.dev CRDs")
	direct, err := client.New(opts.Config, client.Options{Scheme: scheme})
	if err != nil {
		rep.End(false)
		return err
	}
	if err := installCRDs(ctx, direct); err != nil {
		rep.End(false)
		return err
	}
	rep.End(true)

	extra := map[string]http.Handler{}
	var links *artifact.Signer
	if opts.ArtifactsRoot != "" {
		// Runner pods write there: serve it through an os.Root, so links
		// they leave cannot reach out of it.
		if err := os.MkdirAll(opts.ArtifactsRoot, 0o755); err != nil {
			return err
		}
		root, err := os.OpenRoot(opts.ArtifactsRoot)
		if err != nil {
			return err
		}
		defer root.Close()
		h, signer, err := artifactsHandlerFor(ctx, opts, direct, root.FS())
		if err != nil {
			return err
		}
		extra[artifact.Path], links = h, signer
	}
	// Only runner pods and Jobs are read, and only by the TestRun
	// controller: cache those alone, not every pod of a shared management
	// cluster.
	runnerObjects, err := labels.NewRequirement(testrun.LabelTestRun, selection.Exists, nil)
	if err != nil {
		return err
	}
	runners := cache.ByObject{Label: labels.NewSelector().Add(*runnerObjects)}
	mgr, err := ctrl.NewManager(opts.Config, ctrl.Options{
		Scheme: scheme,
		Cache:  cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: runners, &batchv1.Job{}: runners}},
		// Secrets and ConfigMaps are read one at a time, straight from the
		// API: caching them would hold every one of a shared management
		// cluster in memory.
		Client:                  client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}, &corev1.ConfigMap{}}}},
		Metrics:                 metricsOptions(opts, extra),
		HealthProbeBindAddress:  opts.HealthAddr,
		LeaderElection:          opts.LeaderElection,
		LeaderElectionID:        "ephemera-" + opts.Instance,
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		Logger:                  opts.Log,
	})
	if err != nil {
		return fmt.Errorf("start the controller manager: %w", err)
	}
	metrics.Register()
	if opts.RegistryDir != "" {
		// Registered once per process: a second Run keeps the first.
		_ = crmetrics.Registry.Register(registry.Collector(opts.RegistryDir))
	}

	// The provisioner wakes the reconcilers whenever a cluster changes.
	queueEvents := make(chan event.GenericEvent, 1)
	tcEvents := make(chan event.GenericEvent, 1024)
	addonEvents := mgr.GetEventRecorder("ephemera-addons")
	prov := provision.New(opts.Provider, provision.Options{
		Log: opts.Log.WithName("provision"),
		// Addons read the ConfigMaps and Secrets they name straight from
		// the API (the client caches neither).
		Reader: mgr.GetClient(),
		OnAddonPhase: func(s provision.Status, ev addons.PhaseEvent) {
			if e, ok := provision.AddonPhaseEvent(s, ev); ok {
				addonEvents.Eventf(e.Regarding, nil, e.Type, e.Reason, "InstallAddons", "%s", truncateNote(e.Note))
			}
		},
		Observe: func(d time.Duration) {
			metrics.ProvisionDuration.WithLabelValues(opts.Provider.Name()).Observe(d.Seconds())
		},
		Notify: func(s provision.Status) {
			select {
			case queueEvents <- event.GenericEvent{Object: &v1alpha1.TestCluster{}}:
			default: // a pass is pending already
			}
			if name := s.Labels[provision.LabelTestCluster]; name != "" {
				tc := &v1alpha1.TestCluster{}
				tc.Namespace, tc.Name = s.Labels[provision.LabelNamespace], name
				go func() { tcEvents <- event.GenericEvent{Object: tc} }()
			}
		},
	})
	rep.Start("Checking this server's instance record")
	if err := claimInstance(ctx, direct, opts.Instance, opts.LeaderElectionNamespace, opts.StateDir); err != nil {
		rep.End(false)
		return err
	}
	rep.End(true)
	// The clusters of an earlier server are loaded once this replica leads
	// (at once without leader election); until then the reconcilers wait.
	if err := mgr.Add(&loader{prov: prov, instance: opts.Instance, log: opts.Log.WithName("provision")}); err != nil {
		return err
	}
	if err := mgr.Add(prov); err != nil {
		return err
	}

	now := time.Now
	tcr := &testcluster.Reconciler{Client: mgr.GetClient(), Provisioner: prov, Server: opts.Instance, Limits: opts.Limits, Now: now}
	if err := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.TestCluster{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 16}).
		WatchesRawSource(source.Channel(tcEvents, &handler.EnqueueRequestForObject{})).
		Complete(tcr); err != nil {
		return err
	}
	toQueue := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{admission.Request}
	})
	adm := &admission.Reconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Provisioner: prov, Server: opts.Instance,
		MaxClusters: opts.MaxClusters, MaxPerNamespace: opts.MaxPerNamespace, OwnerLabel: opts.OwnerLabel, Now: now,
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("admission").
		Watches(&v1alpha1.TestCluster{}, toQueue, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ClusterPool{}, toQueue, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ClusterTemplate{}, toQueue).
		WatchesRawSource(source.Channel(queueEvents, toQueue)).
		Complete(adm); err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return err
	}
	trr := &testrun.Reconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Kube: kube, ArtifactsRoot: opts.ArtifactsRoot, ExternalURL: opts.ExternalURL, Now: now,
		Events: mgr.GetEventRecorder("ephemera-testrun"),
	}
	trr.Links, trr.LinkTTL = links, cmp.Or(opts.ArtifactLinkTTL, DefaultArtifactLinkTTL)
	if opts.Gateway != nil {
		trr.Gateway = opts.Gateway
		defer opts.Gateway.Close()
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.TestRun{}).
		Owns(&v1alpha1.TestRun{}).
		Owns(&v1alpha1.TestCluster{}).
		Owns(&batchv1.Job{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 8}).
		Complete(trr); err != nil {
		return err
	}
	if err := mgr.Add(&reaper.Reaper{
		Reader: mgr.GetAPIReader(), Provisioner: prov, Server: opts.Instance,
		Interval: opts.ReapInterval, Log: opts.Log.WithName("reaper"),
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	opts.Log.Info("Starting controllers", "instance", opts.Instance, "maxClusters", opts.MaxClusters, "metrics", opts.MetricsAddr, "health", opts.HealthAddr)
	return mgr.Start(ctx)
}

// truncateNote keeps an event's note within what the API accepts (1 kB).
func truncateNote(note string) string {
	if len(note) <= 1000 {
		return note
	}
	cut := 997
	for cut > 0 && !utf8.RuneStart(note[cut]) {
		cut--
	}
	return note[:cut] + "..."
}
