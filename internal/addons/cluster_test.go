package addons

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// newTestCluster creates a cluster of two simulated nodes with the ephemera binary named by
// EPHEMERA_BIN, in a state dir of its own, and deletes it when the test ends. Creating a cluster
// uses the host like test/e2e does, so these tests run only when asked, serialized with the other
// helpers' runs:
//
//	go build -o bin/ephemera ./cmd/ephemera && flock -o /tmp/ephemera-e2e.lock \
//	  env EPHEMERA_BIN=$PWD/bin/ephemera go test -count=1 ./internal/addons/
func newTestCluster(t *testing.T, name string) *rest.Config {
	t.Helper()
	bin := os.Getenv("EPHEMERA_BIN")
	if bin == "" {
		t.Skip("EPHEMERA_BIN is not set: this test creates a cluster with the ephemera binary")
	}
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--state-dir", dir + "/state", "--registry-dir", dir + "/registry"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ephemera %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	t.Cleanup(func() { run("delete", "cluster", name) })
	run("create", "cluster", name, "--simulated-nodes", "2")
	cfg, err := clientcmd.RESTConfigFromKubeConfig(run("get", "kubeconfig", name))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var (
	crdsGVR    = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	widgetsGVR = schema.GroupVersionResource{Group: "test.ephemera.dev", Version: "v1", Resource: "widgets"}
)

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.ephemera.dev}
spec:
  group: test.ephemera.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

const lbServiceTemplate = `apiVersion: v1
kind: Service
metadata: {name: {{ .Release.Name }}}
spec:
  type: LoadBalancer
  selector: {app: {{ .Release.Name }}}
  ports: [{port: 80, targetPort: 8080}]
`

// TestApply installs three phases on a real cluster (a chart with a CRD in crds/ and an operator
// Deployment; a CR of that CRD and a manifest of the cluster's facts; a chart with a Deployment
// behind a LoadBalancer Service), checks their order and results, that a second Apply changes
// nothing and that changed values upgrade the release; then a phase that never gets ready, and
// sources read from ConfigMaps and Secrets as a server does.
func TestApply(t *testing.T) {
	const name = "addons-test"
	cfg := newTestCluster(t, name)
	ctx := t.Context()
	kc := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)

	operator := writeChart(t, "operator", map[string]string{"crds/widgets.yaml": widgetCRD})
	web := writeChart(t, "web", map[string]string{"templates/service.yaml": lbServiceTemplate})
	phases := func(greeting string) []v1alpha1.AddonPhase {
		return []v1alpha1.AddonPhase{
			{
				Name:    "operators",
				Timeout: &metav1.Duration{Duration: 2 * time.Minute},
				Charts:  []v1alpha1.ChartSource{{Name: "operator", Chart: operator, Namespace: "ops", CreateNamespace: true}},
				Manifests: []v1alpha1.ManifestSource{{Inline: `apiVersion: v1
kind: Namespace
metadata: {name: "team-{{ .Labels.pr }}"}
`}},
			},
			{
				Name: "config",
				Manifests: []v1alpha1.ManifestSource{{Inline: `apiVersion: test.ephemera.dev/v1
kind: Widget
metadata: {name: w1, namespace: team-42}
spec: {size: 3}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: facts, namespace: team-42}
data: {name: "{{ .Name }}", domain: "{{ .Ingress.Domain }}", address: "{{ .Ingress.Address }}"}
`}},
			},
			{
				Name: "apps",
				Charts: []v1alpha1.ChartSource{{Name: "web", Chart: web, Namespace: "apps", CreateNamespace: true,
					Values: jsonValues(t, `greeting: "`+greeting+` {{ .Name }}"`)}},
			},
		}
	}
	facts := Facts{Name: name, KubernetesVersion: "v1.36.3", Ingress: Ingress{Address: "10.9.9.9", Domain: name + ".test"},
		Labels: map[string]string{"pr": "42"}}
	if err := Validate(ctx, phases("hello"), Sources{}, nil); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	plan, err := Prepare(ctx, phases("hello"), facts, Sources{})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}

	// What a phase sees when it starts: the previous phase is ready.
	var mu sync.Mutex
	var events []string
	var orderErrs []string
	progress := func(e PhaseEvent) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e.Phase+" "+e.Kind)
		if e.Phase == "config" && e.Kind == PhaseStarted {
			d, err := kc.AppsV1().Deployments("ops").Get(ctx, "operator", metav1.GetOptions{})
			if err != nil || d.Status.AvailableReplicas != 1 {
				orderErrs = append(orderErrs, "config started before Deployment ops/operator was available")
			}
			crd, err := dyn.Resource(crdsGVR).Get(ctx, "widgets.test.ephemera.dev", metav1.GetOptions{})
			if ready, _ := readiness(crd); err != nil || !ready {
				orderErrs = append(orderErrs, "config started before the CRD was Established")
			}
		}
		if e.Kind == PhaseReady && e.Duration <= 0 {
			orderErrs = append(orderErrs, e.Phase+" Ready without a duration")
		}
	}
	res, err := Apply(ctx, cfg, plan, ApplyOptions{Progress: progress})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantEvents := "operators Started,operators Ready,config Started,config Ready,apps Started,apps Ready"
	if got := strings.Join(events, ","); got != wantEvents {
		t.Errorf("progress = %s\nwant %s", got, wantEvents)
	}
	if len(orderErrs) > 0 {
		t.Errorf("order: %v", orderErrs)
	}
	if len(res.Phases) != 3 || res.Phases[2].Name != "apps" {
		t.Errorf("Result = %+v, want the three phases", res)
	}

	cm, err := kc.CoreV1().ConfigMaps("team-42").Get(ctx, "facts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["name"] != name || cm.Data["domain"] != name+".test" || cm.Data["address"] != "10.9.9.9" {
		t.Errorf("facts ConfigMap = %v", cm.Data)
	}
	if mf := cm.ManagedFields; len(mf) == 0 || mf[0].Manager != fieldManager || mf[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Errorf("facts ConfigMap managed fields = %+v, want applied by %s", mf, fieldManager)
	}
	svc, err := kc.CoreV1().Services("apps").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
		t.Errorf("Service apps/web = %v, %v; want a LoadBalancer address", svc.Status.LoadBalancer, err)
	}
	webDeploy := func() *appsv1.Deployment {
		d, err := kc.AppsV1().Deployments("apps").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if g := webDeploy().Spec.Template.Annotations["greeting"]; g != "hello "+name {
		t.Errorf("web's greeting = %q, want the rendered value", g)
	}
	// Release records are Secrets, where the helm CLI looks for them.
	revisions := func(ns, release string) []string {
		t.Helper()
		l, err := kc.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + release})
		if err != nil {
			t.Fatal(err)
		}
		var v []string
		for _, s := range l.Items {
			v = append(v, s.Labels["version"]+":"+s.Labels["status"])
		}
		return v
	}
	if got := strings.Join(revisions("ops", "operator"), ","); got != "1:deployed" {
		t.Errorf("operator's revisions = %s, want 1:deployed", got)
	}

	t.Run("second apply changes nothing", func(t *testing.T) {
		widget, err := dyn.Resource(widgetsGVR).Namespace("team-42").Get(ctx, "w1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deploy := webDeploy()
		plan, err := Prepare(ctx, phases("hello"), facts, Sources{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(ctx, cfg, plan, ApplyOptions{}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if got := strings.Join(revisions("ops", "operator"), ",") + " " + strings.Join(revisions("apps", "web"), ","); got != "1:deployed 1:deployed" {
			t.Errorf("revisions = %s, want 1:deployed for both releases", got)
		}
		cm2, _ := kc.CoreV1().ConfigMaps("team-42").Get(ctx, "facts", metav1.GetOptions{})
		widget2, _ := dyn.Resource(widgetsGVR).Namespace("team-42").Get(ctx, "w1", metav1.GetOptions{})
		if cm2.ResourceVersion != cm.ResourceVersion || widget2.GetResourceVersion() != widget.GetResourceVersion() {
			t.Errorf("manifests were rewritten: ConfigMap %s → %s, Widget %s → %s", cm.ResourceVersion, cm2.ResourceVersion,
				widget.GetResourceVersion(), widget2.GetResourceVersion())
		}
		if d := webDeploy(); d.ResourceVersion != deploy.ResourceVersion {
			t.Errorf("Deployment apps/web was rewritten: %s → %s", deploy.ResourceVersion, d.ResourceVersion)
		}
	})

	t.Run("changed values upgrade", func(t *testing.T) {
		plan, err := Prepare(ctx, phases("bye"), facts, Sources{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(ctx, cfg, plan, ApplyOptions{}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if got := strings.Join(revisions("apps", "web"), ","); got != "1:superseded,2:deployed" {
			t.Errorf("web's revisions = %s, want 1:superseded,2:deployed", got)
		}
		if got := strings.Join(revisions("ops", "operator"), ","); got != "1:deployed" {
			t.Errorf("operator's revisions = %s, want 1:deployed", got)
		}
		if g := webDeploy().Spec.Template.Annotations["greeting"]; g != "bye "+name {
			t.Errorf("web's greeting = %q after the upgrade", g)
		}
	})

	t.Run("never ready", func(t *testing.T) {
		stuck := writeChart(t, "stuck", nil)
		phases := []v1alpha1.AddonPhase{{
			Name:    "broken",
			Timeout: &metav1.Duration{Duration: 10 * time.Second},
			Charts: []v1alpha1.ChartSource{{Name: "stuck", Chart: stuck, Namespace: "stuck", CreateNamespace: true,
				Values: jsonValues(t, `nodeSelector: {no-such-node: "true"}`)}},
		}, {Name: "after"}}
		plan, err := Prepare(ctx, phases, facts, Sources{})
		if err != nil {
			t.Fatal(err)
		}
		var got []PhaseEvent
		start := time.Now()
		_, err = Apply(ctx, cfg, plan, ApplyOptions{Progress: func(e PhaseEvent) { got = append(got, e) }})
		var pe *PhaseError
		if !errors.As(err, &pe) || !errors.Is(err, ErrNotReady) {
			t.Fatalf("Apply = %v, want a *PhaseError wrapping ErrNotReady", err)
		}
		if pe.Phase != "broken" || pe.Item != "Deployment stuck/stuck" ||
			!strings.HasPrefix(pe.Reason, "not Available: pod stuck-") || !strings.Contains(pe.Reason, ": Unschedulable") {
			t.Errorf("PhaseError = %q", err)
		}
		if d := time.Since(start); d < 10*time.Second || d > 40*time.Second {
			t.Errorf("Apply failed after %v, want about the phase's 10s timeout", d)
		}
		if len(got) != 2 || got[1].Kind != PhaseFailed || !errors.Is(got[1].Err, err) {
			t.Errorf("progress = %+v, want broken Started then Failed with the error (and no later phase)", got)
		}
	})

	t.Run("server sources", func(t *testing.T) {
		// The cluster stands in for a server's management plane too: the ConfigMap and Secret are
		// read from namespace tenant.
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := kc.CoreV1().ConfigMaps("tenant").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "manifests"},
			Data: map[string]string{
				"b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-b, namespace: team-42}\n",
				"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Name }}-from-a', namespace: team-42}\n",
			}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := kc.CoreV1().Secrets("tenant").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "secret-manifests"},
			Data: map[string][]byte{"s.yaml": []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: from-secret, namespace: team-42}\nstringData: {k: v}\n")}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		reader, err := client.New(cfg, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		src := Sources{ServerMode: true, Reader: reader, Namespace: "tenant"}
		phases := []v1alpha1.AddonPhase{{Name: "from-objects", Manifests: []v1alpha1.ManifestSource{
			{ConfigMapRef: &v1alpha1.KeyReference{Name: "manifests"}},
			{SecretRef: &v1alpha1.KeyReference{Name: "secret-manifests", Key: "s.yaml"}},
		}}}
		plan, err := Prepare(ctx, phases, facts, src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(ctx, cfg, plan, ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{name + "-from-a", "from-b"} {
			if _, err := kc.CoreV1().ConfigMaps("team-42").Get(ctx, n, metav1.GetOptions{}); err != nil {
				t.Errorf("ConfigMap team-42/%s: %v", n, err)
			}
		}
		if _, err := kc.CoreV1().Secrets("team-42").Get(ctx, "from-secret", metav1.GetOptions{}); err != nil {
			t.Errorf("Secret team-42/from-secret: %v", err)
		}
		phases[0].Manifests = []v1alpha1.ManifestSource{{ConfigMapRef: &v1alpha1.KeyReference{Name: "manifests", Key: "c.yaml"}}}
		if _, err := Prepare(ctx, phases, facts, src); err == nil || !strings.Contains(err.Error(), `tenant/manifests has no key "c.yaml"`) {
			t.Errorf("Prepare of a missing key = %v", err)
		}
	})
}
