package addons

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRender(t *testing.T) {
	facts := Facts{
		Name:              "demo",
		KubernetesVersion: "v1.36.3",
		Ingress:           Ingress{Address: "10.0.0.1", Domain: "demo.test"},
		Labels:            map[string]string{"pr": "42"},
	}
	tests := []struct {
		name    string
		text    string
		strict  bool
		want    string
		wantErr string
	}{
		{"no template", "plain: text", true, "plain: text", ""},
		{"every fact", "{{ .Name }} {{ .KubernetesVersion }} {{ .Ingress.Address }} {{ .Ingress.Domain }} {{ .Labels.pr }}", true,
			"demo v1.36.3 10.0.0.1 demo.test 42", ""},
		{"unknown field", "{{ .Nmae }}", true, "", "can't evaluate field Nmae"},
		{"unknown field, lenient", "{{ .Nmae }}", false, "", "can't evaluate field Nmae"},
		{"unknown ingress field", "{{ .Ingress.Host }}", true, "", "can't evaluate field Host"},
		{"missing label", "{{ .Labels.repo }}", true, "", `map has no entry for key "repo"`},
		{"missing label, lenient", "x{{ .Labels.repo }}x", false, "xx", ""},
		{"bad syntax", "{{ .Name ", true, "", "template:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderer{facts: facts, strict: tt.strict}.render("t", tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("render = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("render = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestRenderValues(t *testing.T) {
	r := renderer{facts: Facts{Name: "demo", Ingress: Ingress{Domain: "demo.test"}}, strict: true}
	in := map[string]any{
		"host":  "web.{{ .Ingress.Domain }}",
		"list":  []any{"{{ .Name }}", 3.0, true},
		"inner": map[string]any{"name": "{{ .Name }}-x"},
	}
	got, err := r.renderValues("values", in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"host":  "web.demo.test",
		"list":  []any{"demo", 3.0, true},
		"inner": map[string]any{"name": "demo-x"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("renderValues (-want +got):\n%s", d)
	}
	if _, err := r.renderValues("values", map[string]any{"a": []any{"{{ .Labels.pr }}"}}); err == nil || !strings.Contains(err.Error(), "values.a[0]") {
		t.Errorf("renderValues of a missing label = %v, want an error naming values.a[0]", err)
	}
}
