package addons

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	chartloader "helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/registry"
	releasecommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// helmDriver stores release records as Secrets, as the helm CLI does by default, so that
// `helm list`, `helm upgrade` and `helm uninstall` work on the cluster afterwards.
const helmDriver = "secret"

// maxHistory bounds the release revisions kept by an upgrade.
const maxHistory = 10

// remoteCharts fetches oci:// and repository charts into a temporary Helm home.
type remoteCharts struct {
	dir      string
	settings *cli.EnvSettings
	registry *registry.Client
	// plain pulls from the registries of plainHTTP.
	plain     *registry.Client
	plainHTTP func(host string) bool
}

func newRemoteCharts(src Sources) (*remoteCharts, error) {
	dir, err := os.MkdirTemp("", "ephemera-charts-")
	if err != nil {
		return nil, err
	}
	settings := cli.New()
	settings.RepositoryCache = filepath.Join(dir, "repository")
	settings.RepositoryConfig = filepath.Join(dir, "repositories.yaml")
	settings.ContentCache = filepath.Join(dir, "content")
	if src.ServerMode {
		// A server does not read its own user's registry credentials.
		settings.RegistryConfig = filepath.Join(dir, "registry.json")
	}
	opts := []registry.ClientOption{
		registry.ClientOptCredentialsFile(settings.RegistryConfig),
		registry.ClientOptWriter(io.Discard),
	}
	if src.HTTPClient != nil {
		opts = append(opts, registry.ClientOptHTTPClient(src.HTTPClient))
	}
	rc, err := registry.NewClient(opts...)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("registry client: %w", err)
	}
	plain, err := registry.NewClient(append(opts, registry.ClientOptPlainHTTP())...)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("registry client: %w", err)
	}
	isPlain := func(host string) bool {
		h := host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
		if a, err := netip.ParseAddr(strings.Trim(h, "[]")); h == "localhost" || (err == nil && a.IsLoopback()) {
			return true
		}
		return slices.Contains(src.PlainHTTP, host)
	}
	return &remoteCharts{dir: dir, settings: settings, registry: rc, plain: plain, plainHTTP: isPlain}, nil
}

func (r *remoteCharts) close() { _ = os.RemoveAll(r.dir) }

// load downloads a chart and loads it.
func (r *remoteCharts) load(c v1alpha1.ChartSource) (*chartv2.Chart, error) {
	in := action.NewInstall(&action.Configuration{})
	in.SetRegistryClient(r.registry)
	if ref, ok := strings.CutPrefix(c.Chart, "oci://"); ok {
		if host, _, _ := strings.Cut(ref, "/"); r.plainHTTP(host) {
			in.SetRegistryClient(r.plain)
			in.PlainHTTP = true
		}
	}
	in.RepoURL = c.Repo
	in.Version = c.Version
	path, err := in.LocateChart(c.Chart, r.settings)
	if err != nil {
		return nil, err
	}
	return chartloader.Load(path)
}

// restGetter is the genericclioptions.RESTClientGetter that Helm's kube client needs, made from a
// rest.Config rather than a kubeconfig file.
type restGetter struct {
	cfg       *rest.Config
	namespace string
	disc      discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
}

var _ genericclioptions.RESTClientGetter = (*restGetter)(nil)

func newRESTGetter(cfg *rest.Config, namespace string) (*restGetter, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc := memory.NewMemCacheClient(dc)
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(disc), disc, nil)
	return &restGetter{cfg: cfg, namespace: namespace, disc: disc, mapper: mapper}, nil
}

func (g *restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.cfg), nil }

func (g *restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.disc, nil
}

func (g *restGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.mapper, nil }

func (g *restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	// Helm's kube client asks it only for the default namespace (and, through kubectl's factory,
	// the client config).
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: g.cfg.Host}
	cfg.Contexts["cluster"] = &clientcmdapi.Context{Cluster: "cluster", Namespace: g.namespace}
	cfg.CurrentContext = "cluster"
	return &clientConfig{raw: *cfg, rest: g.cfg, namespace: g.namespace}
}

// clientConfig is a clientcmd.ClientConfig of a fixed rest.Config and namespace.
type clientConfig struct {
	raw       clientcmdapi.Config
	rest      *rest.Config
	namespace string
}

func (c *clientConfig) RawConfig() (clientcmdapi.Config, error) { return c.raw, nil }
func (c *clientConfig) ClientConfig() (*rest.Config, error)     { return rest.CopyConfig(c.rest), nil }
func (c *clientConfig) Namespace() (string, bool, error)        { return c.namespace, true, nil }
func (c *clientConfig) ConfigAccess() clientcmd.ConfigAccess {
	return clientcmd.NewDefaultClientConfigLoadingRules()
}

// chartOutcome says what installChart did.
type chartOutcome string

const (
	chartInstalled chartOutcome = "installed"
	chartUpgraded  chartOutcome = "upgraded"
	chartUnchanged chartOutcome = "unchanged"
)

// installChart installs item's release if absent, upgrades it if its chart or values differ from
// the latest revision (or that revision is not deployed), and leaves it alone otherwise. It
// returns the release's objects and its chart's CRDs, to wait on. Helm waits only for hooks
// (WaitStrategy hookOnly): readiness is the phase's business.
func installChart(ctx context.Context, cfg *rest.Config, item chartItem) (objs []objectRef, outcome chartOutcome, err error) {
	getter, err := newRESTGetter(cfg, item.namespace)
	if err != nil {
		return nil, "", err
	}
	ac := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	if err := ac.Init(getter, item.namespace, helmDriver); err != nil {
		return nil, "", fmt.Errorf("helm: %w", err)
	}
	values, err := normalizeValues(item.values)
	if err != nil {
		return nil, "", err
	}
	timeout := 10 * time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}

	var rel *releasev1.Release
	last, err := action.NewGet(ac).Run(item.release)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		in := action.NewInstall(ac)
		in.ReleaseName = item.release
		in.Namespace = item.namespace
		in.CreateNamespace = item.createNamespace
		in.WaitStrategy = kube.HookOnlyStrategy
		in.Timeout = timeout
		r, err := in.RunWithContext(ctx, item.chart, values)
		if err != nil {
			return nil, "", fmt.Errorf("helm install: %w", err)
		}
		if rel, err = asRelease(r); err != nil {
			return nil, "", err
		}
		outcome = chartInstalled
	case err != nil:
		return nil, "", fmt.Errorf("helm get: %w", err)
	default:
		if rel, err = asRelease(last); err != nil {
			return nil, "", err
		}
		if rel.Info == nil || rel.Info.Status != releasecommon.StatusDeployed || !sameChart(rel, item.chart, values) {
			up := action.NewUpgrade(ac)
			up.Namespace = item.namespace
			up.WaitStrategy = kube.HookOnlyStrategy
			up.Timeout = timeout
			up.MaxHistory = maxHistory
			// The template is the whole truth: values it no longer sets go
			// (Helm would reuse the old ones when the new are empty, and
			// every later apply would upgrade again).
			up.ResetValues = true
			r, err := up.RunWithContext(ctx, item.release, item.chart, values)
			if err != nil {
				return nil, "", fmt.Errorf("helm upgrade: %w", err)
			}
			if rel, err = asRelease(r); err != nil {
				return nil, "", err
			}
			outcome = chartUpgraded
		} else {
			outcome = chartUnchanged
		}
	}

	// Helm installs crds/ on install only: waiting on one an upgrade
	// added would wait for ever.
	var crds []chartv2.CRD
	if outcome == chartInstalled {
		crds = item.chart.CRDObjects()
	}
	for _, crd := range crds {
		refs, err := manifestRefs(string(crd.File.Data), "")
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", crd.Name, err)
		}
		objs = append(objs, refs...)
	}
	refs, err := manifestRefs(rel.Manifest, item.namespace)
	if err != nil {
		return nil, "", fmt.Errorf("release manifest: %w", err)
	}
	return append(objs, refs...), outcome, nil
}

func asRelease(r any) (*releasev1.Release, error) {
	switch r := r.(type) {
	case *releasev1.Release:
		return r, nil
	case releasev1.Release:
		return &r, nil
	default:
		return nil, fmt.Errorf("helm: unexpected release type %T", r)
	}
}

// normalizeValues copies values through JSON, as Helm stores them, so that they compare with a
// stored release's.
func normalizeValues(v map[string]any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	return out, nil
}

// sameChart says whether rel was made from ch with values: same chart name and version, same
// templates and default values, same values.
func sameChart(rel *releasev1.Release, ch *chartv2.Chart, values map[string]any) bool {
	if rel.Chart == nil || rel.Chart.Metadata == nil || ch.Metadata == nil {
		return false
	}
	if rel.Chart.Metadata.Name != ch.Metadata.Name || rel.Chart.Metadata.Version != ch.Metadata.Version {
		return false
	}
	if !sameJSON(rel.Config, values) || !sameJSON(rel.Chart.Values, ch.Values) {
		return false
	}
	if len(rel.Chart.Templates) != len(ch.Templates) {
		return false
	}
	tmpl := map[string]string{}
	for _, t := range rel.Chart.Templates {
		tmpl[t.Name] = string(t.Data)
	}
	for _, t := range ch.Templates {
		if d, ok := tmpl[t.Name]; !ok || d != string(t.Data) {
			return false
		}
	}
	return true
}

func sameJSON(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	na, err1 := normalizeValues(a)
	nb, err2 := normalizeValues(b)
	return err1 == nil && err2 == nil && reflect.DeepEqual(na, nb)
}
