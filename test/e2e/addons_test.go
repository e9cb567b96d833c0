package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// helmVersion is the Helm CLI hack/setup.sh builds into the tools cache.
const helmVersion = "v4.3.2"

// helmBin is the Helm CLI hack/setup.sh builds (EPHEMERA_HELM overrides
// where it is). Its absence fails the test: the addon tests check what
// ephemera installs with the Helm SDK through the CLI users run.
func helmBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("EPHEMERA_HELM")
	if bin == "" {
		tools := os.Getenv("EPHEMERA_TOOLS")
		if tools == "" {
			cache, err := os.UserCacheDir()
			if err != nil {
				t.Fatal(err)
			}
			tools = filepath.Join(cache, "ephemera", "tools")
		}
		bin = filepath.Join(tools, "helm-"+helmVersion)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the Helm CLI %s is missing (%v): run hack/setup.sh, which builds it once from the Go module proxy", helmVersion, err)
	}
	return bin
}

// helmCLI runs the Helm CLI with its config, cache and data in a temp dir.
type helmCLI struct {
	bin  string
	home string
}

func newHelmCLI(t testing.TB) *helmCLI {
	t.Helper()
	return &helmCLI{bin: helmBin(t), home: t.TempDir()}
}

func (c *helmCLI) run(t testing.TB, args ...string) string {
	t.Helper()
	cmd := osexec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(c.home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(c.home, "config"),
		"HELM_DATA_HOME="+filepath.Join(c.home, "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// helmRelease is a row of `helm list -o json`.
type helmRelease struct {
	Name      string      `json:"name"`
	Namespace string      `json:"namespace"`
	Revision  json.Number `json:"revision"`
	Status    string      `json:"status"`
	Chart     string      `json:"chart"`
}

// releases lists a cluster's Helm releases, by namespace/name.
func (c *helmCLI) releases(t testing.TB, kubeconfig string) map[string]helmRelease {
	t.Helper()
	out := c.run(t, "list", "--all-namespaces", "--kubeconfig", kubeconfig, "-o", "json")
	var rows []helmRelease
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("helm list -o json: %v\n%s", err, out)
	}
	m := map[string]helmRelease{}
	for _, r := range rows {
		m[r.Namespace+"/"+r.Name] = r
	}
	return m
}

// Charts the addon tests write. The operator has a CRD in crds/ and a
// Deployment that turns Ready readyAfter seconds after it starts; the web
// app is a Deployment behind a LoadBalancer Service. Both run the hello
// image (.Values.image) and carry .Values.host into the pod's environment.
var (
	operatorChart = map[string]string{
		"Chart.yaml":  "apiVersion: v2\nname: widget-operator\nversion: 0.1.0\n",
		"values.yaml": "image: none\nreadyAfter: 0\n",
		"crds/widgets.yaml": `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.e2e.ephemera.dev}
spec:
  group: e2e.ephemera.dev
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
`,
		"templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: {{ .Release.Name }}, namespace: {{ .Release.Namespace }}}
spec:
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: operator
        image: {{ .Values.image }}
        args: [serve]
        readinessProbe: {httpGet: {path: /, port: 8080}, initialDelaySeconds: {{ .Values.readyAfter }}, periodSeconds: 1}
`,
	}
	webChart = map[string]string{
		"Chart.yaml":  "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"values.yaml": "image: none\nhost: none\n",
		"templates/web.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: {{ .Release.Namespace }}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: web
        image: {{ .Values.image }}
        args: [serve]
        env: [{name: HOST, value: {{ .Values.host | quote }}}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: {{ .Release.Namespace }}}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`,
	}
)

// writeFiles writes files (relative path → content) under dir.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// addonsFixture is what the addon tests install: the charts (the operator as
// a directory, the web app packaged as a .tgz by the Helm CLI) and the hello
// image in the test's local registry.
type addonsFixture struct {
	dir      string // holds charts/operator, charts/web-0.1.0.tgz, manifests/
	image    string // localhost:PORT/e2e/hello:v1
	registry string // localhost:PORT
	helm     *helmCLI
}

func newAddonsFixture(t testing.TB, h *harness) *addonsFixture {
	t.Helper()
	f := &addonsFixture{dir: t.TempDir(), helm: newHelmCLI(t)}
	r := h.must("push", "image", hello.archiveFor(t), "--tag", "e2e/hello:v1")
	f.image = strings.TrimSpace(r.stdout)
	if !regexp.MustCompile(`^localhost:\d+/e2e/hello:v1$`).MatchString(f.image) {
		t.Fatalf("push image printed %q, want localhost:PORT/e2e/hello:v1", r.stdout)
	}
	f.registry = strings.Split(f.image, "/")[0]
	writeFiles(t, filepath.Join(f.dir, "charts", "operator"), operatorChart)
	src := filepath.Join(t.TempDir(), "web")
	writeFiles(t, src, webChart)
	f.helm.run(t, "package", src, "--destination", filepath.Join(f.dir, "charts"))
	// Phase 2's manifests from a directory: a ConfigMap of the cluster's facts.
	writeFiles(t, filepath.Join(f.dir, "manifests"), map[string]string{"facts.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: facts, namespace: default}
data:
  name: "{{ .Name }}"
  address: "{{ .Ingress.Address }}"
  domain: "{{ .Ingress.Domain }}"
  version: "{{ .KubernetesVersion }}"
`})
	return f
}

// threePhases is the template: phase operators installs the
// operator chart (its CRD from crds/, its Deployment Ready readyAfter
// seconds after it starts); phase resources a Widget of that CRD and the
// facts ConfigMap, templated; phase apps the web chart, whose Service is a
// LoadBalancer.
func (f *addonsFixture) threePhases(t testing.TB, readyAfter int) string {
	t.Helper()
	return f.template(t, "three-phases", fmt.Sprintf(`
  - name: operators
    timeout: 2m
    charts:
    - name: widget-operator
      chart: ./charts/operator
      namespace: operators
      createNamespace: true
      values: {image: %[1]q, readyAfter: %[2]d}
  - name: resources
    timeout: 1m
    manifests:
    - inline: |
        apiVersion: e2e.ephemera.dev/v1
        kind: Widget
        metadata: {name: "{{ .Name }}", namespace: default}
        spec: {cluster: "{{ .Name }}", host: "web.{{ .Ingress.Domain }}", pr: "{{ .Labels.pr }}"}
    - path: ./manifests/
  - name: apps
    timeout: 2m
    charts:
    - name: web
      chart: ./charts/web-0.1.0.tgz
      values: {image: %[1]q, host: "web.{{ .Ingress.Domain }}"}
`, f.image, readyAfter))
}

// template writes a ClusterTemplate of one real node with the addons YAML
// (a list of phases, indented by two) in the fixture's dir, so that its
// relative paths name the fixture's charts.
func (f *addonsFixture) template(t testing.TB, name, addons string) string {
	t.Helper()
	p := filepath.Join(f.dir, name+".yaml")
	doc := fmt.Sprintf("apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata: {name: %s}\nspec:\n  nodes: {real: 1}\n  addons:%s", name, addons)
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// restConfig is the admin rest.Config of a cluster.
func (h *harness) restConfig(cluster string) *rest.Config {
	h.t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(h.must("get", "kubeconfig", cluster).stdout))
	if err != nil {
		h.t.Fatal(err)
	}
	return cfg
}

// kubeconfigFile writes a cluster's kubeconfig to a temp file.
func (h *harness) kubeconfigFile(cluster string) string {
	h.t.Helper()
	p := filepath.Join(h.t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(h.must("get", "kubeconfig", cluster).stdout), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// ingressOf reads a cluster's ingress address and domain from `get
// clusters -o json`.
func (h *harness) ingressOf(cluster string) v1alpha1.IngressStatus {
	h.t.Helper()
	var cs []struct {
		Name    string                  `json:"name"`
		Ingress *v1alpha1.IngressStatus `json:"ingress"`
	}
	r := h.must("get", "clusters", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &cs); err != nil {
		h.t.Fatalf("get clusters -o json: %v\n%s", err, r.stdout)
	}
	for _, c := range cs {
		if c.Name == cluster && c.Ingress != nil && c.Ingress.Address != "" {
			return *c.Ingress
		}
	}
	h.t.Fatalf("cluster %s has no ingress in get clusters -o json:\n%s", cluster, r.stdout)
	return v1alpha1.IngressStatus{}
}

var widgetGVR = schema.GroupVersionResource{Group: "e2e.ephemera.dev", Version: "v1", Resource: "widgets"}

// phaseLine matches the progress line of a ready phase, non-TTY:
// " ✓ Installing addons: phase apps (3 of 3: 1 chart web) (12.3s)".
var phaseLine = regexp.MustCompile(`(?m)^ ✓ Installing addons: phase (\S+) \((\d+) of \d+[^)]*\) \(([^)]+)\)$`)

// phaseTimes reads the phases' durations from create's progress output, in
// the order printed.
func phaseTimes(stderr string) (names []string, durations []time.Duration) {
	for _, m := range phaseLine.FindAllStringSubmatch(stderr, -1) {
		d, err := time.ParseDuration(m[3])
		if err != nil {
			continue
		}
		names = append(names, m[1])
		durations = append(durations, d)
	}
	return names, durations
}

// createAll creates clusters at once, each with its args, and returns each
// create's result.
func (h *harness) createAll(clusters map[string][]string) map[string]result {
	h.t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string]result{}
	for name, args := range clusters {
		wg.Go(func() {
			r := h.run(context.Background(), append([]string{"create", "cluster", name}, args...)...)
			mu.Lock()
			out[name] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// TestAddons installs a template's addons into real-node clusters: three
// phases in order (a chart with a CRD in crds/ and an operator, then a
// custom resource of that CRD and manifests templated with the cluster's
// facts, then a chart behind a LoadBalancer Service the host reaches), each
// started only once the one before is ready; the Helm CLI lists the
// releases and `addons apply` twice changes nothing. A chart that never
// gets ready fails the create after its phase's timeout with the pod's
// reason, deleting the cluster unless --retain; a missing chart, malformed
// values, an unknown template key and a label nobody set are refused before
// anything is created. In server mode, a pool of a template whose charts come from
// the local registry (OCI) and manifests from ConfigMaps hands out
// clusters whose addons are ready.
func TestAddons(t *testing.T) {
	h := newHarness(t)
	f := newAddonsFixture(t, h)

	t.Run("refused before anything is created", func(t *testing.T) {
		hh := h.with(t)
		writeFiles(t, f.dir, map[string]string{"malformed-values.yaml": "image: [unclosed\n"})
		for _, tc := range []struct {
			name, addons string
			want         []string
		}{
			{"missing-chart", `
  - name: operators
    charts: [{name: nope, chart: ./charts/nope}]
`, []string{"phase operators", "chart nope", "charts/nope"}},
			{"bad-values", `
  - name: apps
    charts: [{name: web, chart: ./charts/web-0.1.0.tgz, valuesFiles: [./malformed-values.yaml]}]
`, []string{"phase apps", "chart web", "malformed-values.yaml"}},
			{"unknown-key", `
  - name: resources
    manifests:
    - inline: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: "{{ .Nmae }}"}
`, []string{"phase resources", "Nmae"}},
			{"unset-label", `
  - name: resources
    manifests:
    - inline: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: "team-{{ .Labels.team }}"}
`, []string{"phase resources", "team"}},
		} {
			file := f.template(t, tc.name, tc.addons)
			// Refused at once; a create that goes on is cut short.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			r := hh.run(ctx, "create", "cluster", tc.name, "-f", file)
			cancel()
			if r.err == nil {
				t.Errorf("create with addons %s succeeded", tc.name)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("create with addons %s: the error does not say %q:\n%s", tc.name, w, r.stderr)
				}
			}
			if _, err := os.Stat(hh.clusterDir(tc.name)); !os.IsNotExist(err) {
				t.Errorf("create with addons %s made the cluster dir (%v)", tc.name, err)
			}
		}
		if cs := hh.clusters(); len(cs) != 0 {
			t.Errorf("refused creates left clusters: %v", cs)
		}
	})

	// Three clusters at once: the three phases, and a chart whose image
	// cannot be pulled, with and without --retain.
	const readyAfter = 6
	broken := f.template(t, "broken", fmt.Sprintf(`
  - name: operators
    timeout: 20s
    charts:
    - name: broken
      chart: ./charts/operator
      namespace: operators
      createNamespace: true
      values: {image: %q}
`, f.registry+"/none:v1"))
	results := h.createAll(map[string][]string{
		"addons": {"-f", f.threePhases(t, readyAfter), "--label", "pr=42"},
		"broken": {"-f", broken},
		"kept":   {"-f", broken, "--retain"},
	})

	t.Run("three phases in order", func(t *testing.T) {
		hh := h.with(t)
		r := results["addons"]
		if r.err != nil {
			t.Fatalf("create cluster addons: %s", r)
		}
		names, durations := phaseTimes(r.stderr)
		if !slices.Equal(names, []string{"operators", "resources", "apps"}) {
			t.Fatalf("create printed the ready phases %v, want operators, resources, apps:\n%s", names, r.stderr)
		}
		if durations[0] < readyAfter*time.Second {
			t.Errorf("phase operators took %s, less than its Deployment's %ds to Ready", durations[0], readyAfter)
		}
		t.Logf("phases: operators %s, resources %s, apps %s", durations[0], durations[1], durations[2])

		ctx := t.Context()
		cfg := hh.restConfig("addons")
		cs := kubernetes.NewForConfigOrDie(cfg)
		dyn := dynamic.NewForConfigOrDie(cfg)
		in := hh.ingressOf("addons")

		// Phase 1 ready: the operator's pod Ready. Phase 2's objects were
		// created after it (timestamps have a second's precision; the pod
		// takes readyAfter seconds to Ready, so a phase 2 started early
		// would be seconds before).
		pods, err := cs.CoreV1().Pods("operators").List(ctx, metav1.ListOptions{LabelSelector: "app=widget-operator"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("the operator's pods: %v %v", err, pods)
		}
		var opReady time.Time
		for _, c := range pods.Items[0].Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				opReady = c.LastTransitionTime.Time
			}
		}
		if opReady.IsZero() {
			t.Fatalf("the operator's pod is not Ready: %+v", pods.Items[0].Status)
		}
		widget, err := dyn.Resource(widgetGVR).Namespace("default").Get(ctx, "addons", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the Widget of phase resources: %v", err)
		}
		factsCM, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "facts", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the ConfigMap of phase resources: %v", err)
		}
		for what, created := range map[string]time.Time{"the Widget": widget.GetCreationTimestamp().Time, "the facts ConfigMap": factsCM.CreationTimestamp.Time} {
			if created.Before(opReady) {
				t.Errorf("%s (phase resources) was created at %s, before the operator (phase operators) was Ready at %s", what, created, opReady)
			}
		}
		web, err := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the web Deployment of phase apps: %v", err)
		}
		if web.CreationTimestamp.Time.Before(widget.GetCreationTimestamp().Time) {
			t.Errorf("the web Deployment (phase apps) was created at %s, before the Widget (phase resources) at %s", web.CreationTimestamp, widget.GetCreationTimestamp())
		}

		// The CRD came from the chart's crds/, as Helm installs it.
		crd, err := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).
			Get(ctx, "widgets.e2e.ephemera.dev", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the chart's CRD: %v", err)
		}
		if crd.GetCreationTimestamp().After(opReady) {
			t.Errorf("the CRD was created after the operator was Ready")
		}

		// The templates saw the cluster's facts.
		spec, _, _ := unstructured.NestedStringMap(widget.Object, "spec")
		if want := map[string]string{"cluster": "addons", "host": "web." + in.Domain, "pr": "42"}; !maps.Equal(spec, want) {
			t.Errorf("Widget spec %v, want %v", spec, want)
		}
		if want := map[string]string{"name": "addons", "address": in.Address, "domain": in.Domain, "version": newVersion}; !maps.Equal(factsCM.Data, want) {
			t.Errorf("facts ConfigMap %v, want %v", factsCM.Data, want)
		}
		if env := web.Spec.Template.Spec.Containers[0].Env; len(env) != 1 || env[0].Value != "web."+in.Domain {
			t.Errorf("web's HOST from the templated values: %+v, want web.%s", env, in.Domain)
		}

		// Phase 3: the LoadBalancer Service has the ingress address, and
		// the host reaches the app there.
		svc, err := cs.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if lb := svc.Status.LoadBalancer.Ingress; len(lb) != 1 || lb[0].IP != in.Address {
			t.Fatalf("Service web's LoadBalancer status %+v, want the ingress address %s", lb, in.Address)
		}
		hc := &http.Client{Timeout: 3 * time.Second}
		body := ""
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			resp, err := hc.Get("http://" + in.Address + "/")
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); strings.Contains(body, "hello from web-") {
				break
			}
		}
		if !strings.Contains(body, "hello from web-") {
			t.Errorf("GET http://%s/ from the host: %q, want the web app", in.Address, body)
		}
	})

	t.Run("helm lists the releases; addons apply twice changes nothing", func(t *testing.T) {
		hh := h.with(t)
		if results["addons"].err != nil {
			t.Skip("create cluster addons failed")
		}
		kc := hh.kubeconfigFile("addons")
		before := f.helm.releases(t, kc)
		for key, chart := range map[string]string{"operators/widget-operator": "widget-operator-0.1.0", "default/web": "web-0.1.0"} {
			rel, ok := before[key]
			if !ok || rel.Revision.String() != "1" || rel.Status != "deployed" || rel.Chart != chart {
				t.Errorf("helm list: release %s is %+v, want revision 1 of %s, deployed", key, rel, chart)
			}
		}
		if len(before) != 2 {
			t.Errorf("helm list shows %d releases, want 2: %+v", len(before), before)
		}

		ctx := t.Context()
		cfg := hh.restConfig("addons")
		cs := kubernetes.NewForConfigOrDie(cfg)
		dyn := dynamic.NewForConfigOrDie(cfg)
		versions := func() map[string]string {
			t.Helper()
			out := map[string]string{}
			w, err := dyn.Resource(widgetGVR).Namespace("default").Get(ctx, "addons", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out["Widget default/addons"] = w.GetResourceVersion()
			cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "facts", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out["ConfigMap default/facts"] = cm.ResourceVersion
			for _, d := range [][2]string{{"operators", "widget-operator"}, {"default", "web"}} {
				dep, err := cs.AppsV1().Deployments(d[0]).Get(ctx, d[1], metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				out["Deployment "+d[0]+"/"+d[1]] = dep.ResourceVersion
			}
			for _, ns := range []string{"operators", "default"} {
				secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm"})
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range secrets.Items {
					out["Secret "+ns+"/"+s.Name] = s.ResourceVersion
				}
			}
			return out
		}
		want := versions()
		for i := range 2 {
			r := hh.must("addons", "apply", "-f", f.threePhases(t, readyAfter), "--cluster", "addons")
			if got := versions(); !maps.Equal(got, want) {
				t.Errorf("addons apply #%d changed objects: resourceVersions %v, were %v\n%s", i+1, got, want, r.stderr)
			}
			after := f.helm.releases(t, kc)
			for key, rel := range before {
				if after[key].Revision != rel.Revision {
					t.Errorf("addons apply #%d: release %s went from revision %s to %s", i+1, key, rel.Revision, after[key].Revision)
				}
			}
		}
	})

	t.Run("a chart that never gets ready fails the create, deleting the cluster unless --retain", func(t *testing.T) {
		hh := h.with(t)
		want := regexp.MustCompile(`phase operators: Deployment operators/broken not Available: pod broken-[a-z0-9-]+: (ImagePullBackOff|ErrImagePull)`)
		for _, name := range []string{"broken", "kept"} {
			r := results[name]
			if r.err == nil {
				t.Errorf("create cluster %s with a chart that cannot pull its image succeeded:\n%s", name, r)
				continue
			}
			if !want.MatchString(r.stderr) {
				t.Errorf("create cluster %s failed without naming the phase, Deployment and pod reason (want %s):\n%s", name, want, r.stderr)
			}
		}
		cs := hh.clusters()
		if _, ok := cs["broken"]; ok {
			t.Errorf("the failed cluster broken is still there")
		}
		if _, err := os.Stat(hh.clusterDir("broken")); !os.IsNotExist(err) {
			t.Errorf("the failed cluster broken left its dir (%v)", err)
		}
		if _, ok := cs["kept"]; !ok {
			t.Fatalf("the failed cluster kept is gone despite --retain: %v", cs)
		}
		// Kept as it failed: the release is there, its pod still cannot pull.
		if _, ok := f.helm.releases(t, hh.kubeconfigFile("kept"))["operators/broken"]; !ok {
			t.Errorf("the retained cluster has no release broken")
		}
		hh.must("delete", "cluster", "kept")
	})

	t.Run("server: a pool of a template with addons hands out clusters whose addons are ready", func(t *testing.T) {
		hh := h.with(t)
		// The server waits for every cluster but its own to go at the end.
		hh.must("delete", "cluster", "--all")
		testAddonsServer(t, hh, f)
	})
}

// testAddonsServer runs serve with a pool of a template whose charts come
// from the local registry (pushed there as OCI artifacts by the Helm CLI)
// and whose manifests and values come from ConfigMaps, claims a cluster
// and checks its addons.
func testAddonsServer(t *testing.T, h *harness, f *addonsFixture) {
	s := h.startServer("--runner-node=false", "--max-clusters", "3")
	ctx := t.Context()
	c := s.client

	// Charts come from the local registry, pushed there by the Helm CLI.
	pkgDir := t.TempDir()
	f.helm.run(t, "package", filepath.Join(f.dir, "charts", "operator"), "--destination", pkgDir)
	for _, tgz := range []string{filepath.Join(pkgDir, "widget-operator-0.1.0.tgz"), filepath.Join(f.dir, "charts", "web-0.1.0.tgz")} {
		f.helm.run(t, "push", tgz, "oci://"+f.registry+"/charts", "--plain-http")
	}

	objs := []client.Object{
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "widget", Namespace: "default"},
			Data: map[string]string{"widget.yaml": `apiVersion: e2e.ephemera.dev/v1
kind: Widget
metadata: {name: "{{ .Name }}", namespace: default}
spec: {cluster: "{{ .Name }}", team: "{{ .Labels.team }}"}
`},
		},
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "web-values", Namespace: "default"},
			Data:       map[string]string{"values.yaml": fmt.Sprintf("image: %s\nhost: \"web.{{ .Ingress.Domain }}\"\n", f.image)},
		},
	}
	tmpl := template("addons", 0)
	tmpl.Spec.Nodes.Real = ptr(int32(1))
	tmpl.Spec.Addons = []v1alpha1.AddonPhase{
		{Name: "operators", Timeout: &metav1.Duration{Duration: 2 * time.Minute}, Charts: []v1alpha1.ChartSource{{
			Name: "widget-operator", Chart: "oci://" + f.registry + "/charts/widget-operator", Version: "0.1.0",
			Namespace: "operators", CreateNamespace: true, Values: jsonValues(t, map[string]any{"image": f.image}),
		}}},
		{Name: "resources", Timeout: &metav1.Duration{Duration: time.Minute}, Manifests: []v1alpha1.ManifestSource{
			{ConfigMapRef: &v1alpha1.KeyReference{Name: "widget"}},
		}},
		{Name: "apps", Timeout: &metav1.Duration{Duration: 2 * time.Minute}, Charts: []v1alpha1.ChartSource{{
			Name: "web", Chart: "oci://" + f.registry + "/charts/web", Version: "0.1.0",
			ValuesFrom: []v1alpha1.ValuesReference{{ConfigMapKeyRef: &v1alpha1.KeyReference{Name: "web-values", Key: "values.yaml"}}},
		}}},
	}
	p := pool("addons", "addons", 1, 2)
	p.Labels = map[string]string{"team": "web"}
	objs = append(objs, tmpl, p)
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	// The pool's first cluster counts as Ready only with its addons.
	pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := waitFor(pctx, func() (bool, string) {
		got := &v1alpha1.ClusterPool{}
		if err := c.Get(pctx, client.ObjectKeyFromObject(p), got); err != nil {
			return false, err.Error()
		}
		return got.Status.Ready >= 1, fmt.Sprintf("pool addons: %+v", got.Status)
	}); err != nil {
		t.Fatalf("the pool of a template with addons never had a Ready cluster: %v", err)
	}

	tc := claim("pr-1", "addons")
	if err := c.Create(ctx, tc); err != nil {
		t.Fatal(err)
	}
	tc = s.waitTC(ctx, t, "default", "pr-1", time.Minute, func(tc *v1alpha1.TestCluster) bool {
		return tc.Status.Phase == v1alpha1.TestClusterReady
	})
	cond := meta.FindStatusCondition(tc.Status.Conditions, v1alpha1.ConditionAddonsReady)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha1.ReasonAddonsInstalled {
		t.Fatalf("claimed TestCluster pr-1 is Ready with AddonsReady %+v, want True AddonsInstalled", cond)
	}
	if !strings.Contains(cond.Message, "3 phases ready") {
		t.Errorf("AddonsReady message %q does not say the 3 phases are ready", cond.Message)
	}

	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: tc.Status.KubeconfigSecret}, secret); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["kubeconfig"])
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	for _, d := range [][2]string{{"operators", "widget-operator"}, {"default", "web"}} {
		dep, err := cs.AppsV1().Deployments(d[0]).Get(ctx, d[1], metav1.GetOptions{})
		if err != nil {
			t.Errorf("the claimed cluster lacks the chart's Deployment %s/%s: %v", d[0], d[1], err)
			continue
		}
		if dep.Status.AvailableReplicas < 1 {
			t.Errorf("Deployment %s/%s of the claimed cluster is not Available: %+v", d[0], d[1], dep.Status)
		}
	}
	w, err := dynamic.NewForConfigOrDie(cfg).Resource(widgetGVR).Namespace("default").Get(ctx, tc.Spec.ClusterName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the claimed cluster lacks the Widget named after it (from the ConfigMap): %v", err)
	}
	if team, _, _ := unstructured.NestedString(w.Object, "spec", "team"); team != "web" {
		t.Errorf("Widget spec.team %q, want the pool's label team=web", team)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, secret.Data["kubeconfig"], 0o600); err != nil {
		t.Fatal(err)
	}
	rels := f.helm.releases(t, kc)
	for _, key := range []string{"operators/widget-operator", "default/web"} {
		if rel, ok := rels[key]; !ok || rel.Status != "deployed" {
			t.Errorf("helm list on the claimed cluster: %s is %+v, want deployed", key, rel)
		}
	}
}

func jsonValues(t testing.TB, v map[string]any) *apiextensionsv1.JSON {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return &apiextensionsv1.JSON{Raw: b}
}
