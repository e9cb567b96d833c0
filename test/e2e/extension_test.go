package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/internal/pki"
)

// extensionImage is examples/extension: an aggregated API server and
// admission and conversion webhooks.
var extension = &exampleImage{pkg: "extension", tag: "example.com/extension:v1"}

// extensionApp runs examples/extension behind the Service extension in
// default and registers its aggregated API, its admission webhook and its
// conversion webhook. CA_BUNDLE, TLS_CRT and TLS_KEY are filled in.
const extensionApp = `apiVersion: v1
kind: Secret
metadata: {name: extension-tls}
type: kubernetes.io/tls
data: {tls.crt: TLS_CRT, tls.key: TLS_KEY}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: extension}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: extension:auth-delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: extension, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: extension:authentication-reader, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{kind: ServiceAccount, name: extension, namespace: default}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: extension}
spec:
  selector: {matchLabels: {app: extension}}
  template:
    metadata: {labels: {app: extension}}
    spec:
      serviceAccountName: extension
      containers:
      - name: extension
        image: example.com/extension:v1
        args: [serve, --tls-cert-file=/tls/tls.crt, --tls-private-key-file=/tls/tls.key]
        ports: [{containerPort: 8443}]
        readinessProbe: {httpGet: {path: /healthz, port: 8443, scheme: HTTPS}, periodSeconds: 1}
        volumeMounts: [{name: tls, mountPath: /tls}]
      volumes: [{name: tls, secret: {secretName: extension-tls}}]
---
apiVersion: v1
kind: Service
metadata: {name: extension}
spec:
  selector: {app: extension}
  ports: [{port: 443, targetPort: 8443}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.ext.ephemera.dev}
spec:
  group: ext.ephemera.dev
  version: v1alpha1
  service: {name: extension, namespace: default, port: 443}
  caBundle: CA_BUNDLE
  groupPriorityMinimum: 1000
  versionPriority: 15
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: extension}
webhooks:
- name: deny.ext.ephemera.dev
  clientConfig:
    service: {name: extension, namespace: default, path: /validate, port: 443}
    caBundle: CA_BUNDLE
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
  objectSelector: {matchExpressions: [{key: ext.ephemera.dev/deny, operator: Exists}]}
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.conv.ephemera.dev}
spec:
  group: conv.ephemera.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, x-kubernetes-preserve-unknown-fields: true}}}}
  - name: v2
    served: true
    storage: false
    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, x-kubernetes-preserve-unknown-fields: true}}}}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        service: {name: extension, namespace: default, path: /convert, port: 443}
        caBundle: CA_BUNDLE
`

// TestExtensions checks that a real-node cluster is extended the way
// operators extend a cluster: an aggregated API server on k8s.io/apiserver
// (delegated authentication: it trusts the front proxy's request headers
// through the CA in kube-system/extension-apiserver-authentication) turns
// Available and sees the caller's user, an admission webhook served by a
// pod denies, and a conversion webhook served by a pod converts.
func TestExtensions(t *testing.T) {
	h := newHarness(t)
	h.must("create", "cluster", "ext")

	h.deployExtension("ext")

	t.Run("an aggregated API server is Available and sees the caller", func(t *testing.T) {
		h := h.with(t)
		if out, err := h.kubectl(newVersion, "ext", "wait", "--for=condition=Available", "apiservice/v1alpha1.ext.ephemera.dev", "--timeout=60s"); err != nil {
			status, _ := h.kubectl(newVersion, "ext", "get", "apiservice/v1alpha1.ext.ephemera.dev", "-o", "jsonpath={.status.conditions}")
			logs, _ := h.kubectl(newVersion, "ext", "logs", "deployment/extension", "--tail=20")
			t.Fatalf("the APIService did not turn Available: %v\n%s\nconditions: %s\nserver log:\n%s", err, out, status, logs)
		}
		raw := h.mustKubectl("ext", "get", "--raw", "/apis/ext.ephemera.dev/v1alpha1/whoamis/me")
		var who struct {
			User   string   `json:"user"`
			Groups []string `json:"groups"`
		}
		if err := json.Unmarshal([]byte(raw), &who); err != nil {
			t.Fatalf("whoami: %v\n%s", err, raw)
		}
		if who.User != "ephemera-admin" || !slices.Contains(who.Groups, "system:masters") {
			t.Errorf("the aggregated API server saw user %q in groups %v; want ephemera-admin in system:masters (the kubeconfig's user, passed on in the request headers)", who.User, who.Groups)
		}
		// Discovery lists it, as kubectl api-resources shows it.
		if out := h.mustKubectl("ext", "api-resources", "--api-group=ext.ephemera.dev"); !strings.Contains(out, "whoamis") {
			t.Errorf("api-resources does not list whoamis:\n%s", out)
		}
	})

	t.Run("an admission webhook served in the cluster denies", func(t *testing.T) {
		h := h.with(t)
		out, err := h.kubectl(newVersion, "ext", "create", "configmap", "denied")
		if err != nil {
			t.Fatalf("an unlabelled ConfigMap was refused: %v\n%s", err, out)
		}
		cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"labelled","labels":{"ext.ephemera.dev/deny":"true"}}}`
		file := filepath.Join(t.TempDir(), "cm.json")
		if err := os.WriteFile(file, []byte(cm), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err = h.kubectl(newVersion, "ext", "create", "-f", file)
		if err == nil || !strings.Contains(out, "denied by the extension's admission webhook") {
			t.Errorf("a ConfigMap labelled ext.ephemera.dev/deny=true: err %v, output:\n%s\nwant the webhook's denial", err, out)
		}
	})

	t.Run("a conversion webhook served in the cluster converts", func(t *testing.T) {
		h := h.with(t)
		w := `{"apiVersion":"conv.ephemera.dev/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"name":"gear"}}`
		file := filepath.Join(t.TempDir(), "widget.json")
		if err := os.WriteFile(file, []byte(w), 0o644); err != nil {
			t.Fatal(err)
		}
		h.mustKubectl("ext", "create", "-f", file)
		if got := h.mustKubectl("ext", "get", "widgets.v2.conv.ephemera.dev", "w", "-o", "jsonpath={.spec.fullName}"); got != "gear" {
			t.Errorf("widget w read as v2: spec.fullName = %q, want gear (converted from v1's spec.name)", got)
		}
	})
	h.must("delete", "cluster", "ext")
}

// deployExtension loads examples/extension into a cluster, gives it a
// serving certificate of a CA of its own and applies extensionApp; it
// returns once the Deployment is rolled out.
func (h *harness) deployExtension(cluster string) {
	t := h.t
	t.Helper()
	h.must("load", "image", extension.archiveFor(t), "--cluster", cluster)
	now := time.Now()
	ca, err := pki.NewCA("extension-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(pki.CertSpec{CommonName: "extension", DNSNames: []string{"extension.default.svc"}, Usage: pki.ServerAuth, Validity: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	app := strings.NewReplacer("CA_BUNDLE", b64(ca.CertPEM()), "TLS_CRT", b64(serving.CertPEM), "TLS_KEY", b64(serving.KeyPEM)).Replace(extensionApp)
	manifest := filepath.Join(t.TempDir(), "extension.yaml")
	if err := os.WriteFile(manifest, []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustKubectl(cluster, "apply", "-f", manifest)
	h.mustKubectl(cluster, "rollout", "status", "deployment/extension", "--timeout=90s")
}

// BenchmarkCreateAPIServiceAvailable: from create to the aggregated API of
// examples/extension Available, its image loaded (62 MB) and its manifests
// applied in between, as a job that tests an operator does; and the part
// until the Deployment is rolled out.
//
//	go test -run '^$' -bench BenchmarkCreateAPIServiceAvailable -benchtime 5x ./test/e2e/
func BenchmarkCreateAPIServiceAvailable(b *testing.B) {
	dir, err := os.MkdirTemp("", "ephemera-bench-")
	if err != nil {
		b.Fatal(err)
	}
	h := &harness{t: b, stateDir: dir}
	b.Cleanup(func() {
		h.run(context.Background(), "delete", "cluster", "--all")
		os.RemoveAll(dir)
	})
	var available, rolledOut []time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("agg-%d", i)
		start := time.Now()
		h.must("create", "cluster", name)
		h.deployExtension(name)
		rolledOut = append(rolledOut, time.Since(start))
		h.mustKubectl(name, "wait", "--for=condition=Available", "apiservice/v1alpha1.ext.ephemera.dev", "--timeout=120s")
		available = append(available, time.Since(start))
		b.StopTimer()
		h.must("delete", "cluster", name)
		b.StartTimer()
	}
	reportDurations(b, "available", available)
	reportDurations(b, "rolled-out", rolledOut)
}
