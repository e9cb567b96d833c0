package addons

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

func TestValidateAndPrepareRefuseBadInput(t *testing.T) {
	dir := t.TempDir()
	chart := writeChart(t, "good", nil)
	writeFiles(t, dir, map[string]string{
		"bad-values.yaml":   "a: [1, 2\n",
		"bad-manifest.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n",
		"noname.yaml":       "apiVersion: v1\nkind: ConfigMap\n",
		"broken/Chart.yaml": "name: [\n",
	})
	good := v1alpha1.ChartSource{Name: "good", Chart: chart}
	tests := []struct {
		name       string
		phase      v1alpha1.AddonPhase
		server     bool
		validate   string // error of Validate; "" means none
		prepare    string // error of Prepare (facts have no label "pr"); "" means none
		wantDetail string
	}{
		{name: "missing chart path",
			phase:    v1alpha1.AddonPhase{Name: "p", Charts: []v1alpha1.ChartSource{{Name: "c", Chart: "./nope"}}},
			validate: "phase p: chart c: ", wantDetail: "no such file or directory"},
		{name: "chart that does not load",
			phase:    v1alpha1.AddonPhase{Name: "p", Charts: []v1alpha1.ChartSource{{Name: "c", Chart: "broken"}}},
			validate: "phase p: chart c: "},
		{name: "chart of another version",
			phase:    v1alpha1.AddonPhase{Name: "p", Charts: []v1alpha1.ChartSource{{Name: "c", Chart: chart, Version: "0.2.0"}}},
			validate: "phase p: chart c: ", wantDetail: "has version 0.1.0, not 0.2.0"},
		{name: "malformed values file",
			phase:    v1alpha1.AddonPhase{Name: "p", Charts: []v1alpha1.ChartSource{{Name: "c", Chart: chart, ValuesFiles: []string{"bad-values.yaml"}}}},
			validate: "phase p: chart c: bad-values.yaml: "},
		{name: "missing values file",
			phase:    v1alpha1.AddonPhase{Name: "p", Charts: []v1alpha1.ChartSource{{Name: "c", Chart: chart, ValuesFiles: []string{"nope.yaml"}}}},
			validate: "phase p: chart c: valuesFiles: ", wantDetail: "no such file"},
		{name: "unknown key in values",
			phase:    v1alpha1.AddonPhase{Name: "p", Charts: []v1alpha1.ChartSource{{Name: "c", Chart: chart, Values: jsonValues(t, `host: "{{ .Ingress.Host }}"`)}}},
			validate: "phase p: chart c: ", wantDetail: "can't evaluate field Host"},
		{name: "unknown key in a manifest",
			phase:    v1alpha1.AddonPhase{Name: "p", Manifests: []v1alpha1.ManifestSource{{Inline: "apiVersion: v1\nkind: Namespace\nmetadata: {name: '{{ .Nmae }}'}\n"}}},
			validate: "phase p: inline manifest: ", wantDetail: "can't evaluate field Nmae"},
		{name: "missing label: known only to Prepare",
			phase:   v1alpha1.AddonPhase{Name: "p", Manifests: []v1alpha1.ManifestSource{{Inline: "apiVersion: v1\nkind: Namespace\nmetadata: {name: 'team-{{ .Labels.pr }}'}\n"}}},
			prepare: "phase p: inline manifest: ", wantDetail: `map has no entry for key "pr"`},
		{name: "malformed manifest",
			phase:    v1alpha1.AddonPhase{Name: "p", Manifests: []v1alpha1.ManifestSource{{Path: "bad-manifest.yaml"}}},
			validate: "phase p: manifest bad-manifest.yaml: bad-manifest.yaml: document 1: "},
		{name: "manifest without a name",
			phase:    v1alpha1.AddonPhase{Name: "p", Manifests: []v1alpha1.ManifestSource{{Path: "noname.yaml"}}},
			validate: "phase p: manifest noname.yaml: noname.yaml: document 1: apiVersion, kind and metadata.name are required"},
		{name: "missing manifest path",
			phase:    v1alpha1.AddonPhase{Name: "p", Manifests: []v1alpha1.ManifestSource{{Path: "nope/"}}},
			validate: "phase p: manifest nope/: ", wantDetail: "no such file"},
		{name: "two sources in one manifest",
			phase:    v1alpha1.AddonPhase{Name: "p", Manifests: []v1alpha1.ManifestSource{{Path: "x.yaml", Inline: "a: b"}}},
			validate: "phase p: manifest: exactly one of path, inline, configMapRef and secretRef must be set"},
		{name: "configMapRef in-job",
			phase:    v1alpha1.AddonPhase{Name: "p", Manifests: []v1alpha1.ManifestSource{{ConfigMapRef: &v1alpha1.KeyReference{Name: "m"}}}},
			validate: "phase p: configMap m: configMapRef, secretRef and valuesFrom are read by a server only"},
		{name: "server: manifest path", server: true,
			phase:    v1alpha1.AddonPhase{Name: "p", Manifests: []v1alpha1.ManifestSource{{Path: "https://example.test/x.yaml"}}},
			validate: "phase p: manifest https://example.test/x.yaml: paths are refused by a server: use a configMapRef or secretRef"},
		{name: "server: chart dir", server: true,
			phase:    v1alpha1.AddonPhase{Name: "p", Charts: []v1alpha1.ChartSource{good}},
			validate: "phase p: chart good: chart paths are refused by a server: use an oci:// reference or a repo"},
		{name: "server: values file", server: true,
			phase:    v1alpha1.AddonPhase{Name: "p", Charts: []v1alpha1.ChartSource{{Name: "c", Chart: "oci://example.test/c", ValuesFiles: []string{"v.yaml"}}}},
			validate: "phase p: chart c: valuesFiles v.yaml: paths are refused by a server: use valuesFrom"},
		{name: "good chart", phase: v1alpha1.AddonPhase{Name: "p", Charts: []v1alpha1.ChartSource{good}}},
	}
	facts := Facts{Name: "demo", Labels: map[string]string{"repo": "r"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := Sources{Dir: dir, ServerMode: tt.server}
			phases := []v1alpha1.AddonPhase{{Name: "first", Manifests: []v1alpha1.ManifestSource{{Inline: "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"}}}, tt.phase}
			check := func(what string, err error, want string) {
				t.Helper()
				if want == "" {
					if err != nil {
						t.Fatalf("%s = %v, want no error", what, err)
					}
					return
				}
				var pe *PhaseError
				if !errors.As(err, &pe) || pe.Phase != tt.phase.Name {
					t.Fatalf("%s = %v, want a *PhaseError of phase %s", what, err, tt.phase.Name)
				}
				if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tt.wantDetail) {
					t.Fatalf("%s = %q\nwant it to start with %q and contain %q", what, err, want, tt.wantDetail)
				}
			}
			check("Validate", Validate(t.Context(), phases, src, nil), tt.validate)
			if tt.prepare != "" {
				// With the labels known before the cluster exists, Validate
				// finds what Prepare would.
				check("Validate with labels", Validate(t.Context(), phases, src, facts.Labels), tt.prepare)
			}
			wantPrepare := tt.prepare
			if tt.validate != "" {
				wantPrepare = tt.validate
			}
			_, err := Prepare(t.Context(), phases, facts, src)
			check("Prepare", err, wantPrepare)
		})
	}
}

func TestPrepareRendersAndMerges(t *testing.T) {
	dir := t.TempDir()
	chart := writeChart(t, "web", nil)
	writeFiles(t, dir, map[string]string{
		"values/a.yaml":   "greeting: from-a\nnested: {a: 1, b: '{{ .Name }}'}\n",
		"values/b.yaml":   "nested: {b: from-b}\n",
		"manifests/2.yml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\n",
		"manifests/1.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\ndata: {domain: '{{ .Ingress.Domain }}'}\n" +
			"---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: one-b}\n",
		"manifests/skip.txt": "not a manifest",
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/m.yaml" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 'url-{{ .Labels.pr }}'}\n"))
	}))
	defer srv.Close()
	phases := []v1alpha1.AddonPhase{{
		Name: "p",
		Manifests: []v1alpha1.ManifestSource{
			{Path: "manifests"},
			{Path: srv.URL + "/m.yaml"},
		},
		Charts: []v1alpha1.ChartSource{{
			Name: "web", Chart: chart, Namespace: "apps", CreateNamespace: true,
			ValuesFiles: []string{"values/a.yaml", filepath.Join(dir, "values/b.yaml")},
			Values:      jsonValues(t, `{host: "web.{{ .Ingress.Domain }}", nested: {c: true}}`),
		}},
	}}
	facts := Facts{Name: "demo", Ingress: Ingress{Domain: "demo.test"}, Labels: map[string]string{"pr": "7"}}
	plan, err := Prepare(t.Context(), phases, facts, Sources{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"p"}, plan.PhaseNames()); d != "" {
		t.Errorf("PhaseNames (-want +got):\n%s", d)
	}
	ph := plan.phases[0]
	if ph.timeout.Minutes() != 10 {
		t.Errorf("timeout = %v, want the default 10m", ph.timeout)
	}
	var names []string
	for _, m := range ph.manifests {
		for _, o := range m.objects {
			names = append(names, o.GetName())
		}
	}
	if d := cmp.Diff([]string{"one", "one-b", "two", "url-7"}, names); d != "" {
		t.Errorf("manifest objects (-want +got):\n%s", d)
	}
	if got, _, _ := unstructuredString(ph.manifests[0].objects[0].Object, "data", "domain"); got != "demo.test" {
		t.Errorf("rendered domain = %q, want demo.test", got)
	}
	c := ph.charts[0]
	if c.release != "web" || c.namespace != "apps" || !c.createNamespace || c.chart.Metadata.Name != "web" {
		t.Errorf("chart item = %+v", c)
	}
	want := map[string]any{
		"greeting": "from-a",
		"host":     "web.demo.test",
		"nested":   map[string]any{"a": 1.0, "b": "from-b", "c": true},
	}
	if d := cmp.Diff(want, c.values); d != "" {
		t.Errorf("values (-want +got):\n%s", d)
	}

	// A URL that is not there fails Validate too.
	phases[0].Manifests = []v1alpha1.ManifestSource{{Path: srv.URL + "/gone.yaml"}}
	if err := Validate(t.Context(), phases, Sources{Dir: dir}, nil); err == nil || !strings.Contains(err.Error(), "404 Not Found") {
		t.Errorf("Validate of a missing URL = %v, want a 404", err)
	}
}
