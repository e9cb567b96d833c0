package addons

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
)

// Facts are what templates in manifests and values see: {{ .Name }}, {{ .Ingress.Address }},
// {{ .Ingress.Domain }}, {{ .KubernetesVersion }}, {{ .Labels.pr }}. An unknown key is an error
// (a missing label too).
type Facts struct {
	// Name is the cluster's name.
	Name string
	// KubernetesVersion is the cluster's Kubernetes version, e.g. v1.36.3.
	KubernetesVersion string
	// Ingress is where the cluster's LoadBalancer Services and ingresses are reached.
	Ingress Ingress
	// Labels are the TestCluster's labels (repo, pr…).
	Labels map[string]string
}

// Ingress is the cluster's ingress address and DNS domain.
type Ingress struct {
	// Address is the ingress IP address.
	Address string
	// Domain is the DNS domain whose names resolve to the ingress.
	Domain string
}

// validationFacts stand in for a cluster's facts when Validate renders templates before the cluster
// exists: every field is set, and a missing label is not an error (the cluster's labels are not
// known yet).
var validationFacts = Facts{
	Name:              "validate",
	KubernetesVersion: "v0.0.0",
	Ingress:           Ingress{Address: "192.0.2.1", Domain: "validate.example"},
}

// renderer renders Go templates of facts. strict makes a missing label an error; an unknown field
// ({{ .Nmae }}) is always one.
type renderer struct {
	facts  Facts
	strict bool
}

// render executes text as a template named name.
func (r renderer) render(name, text string) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	missing := "missingkey=error"
	if !r.strict {
		missing = "missingkey=zero"
	}
	t, err := template.New(name).Option(missing).Parse(text)
	if err != nil {
		return "", err // "template: NAME:LINE: …"
	}
	var b strings.Builder
	if err := t.Execute(&b, r.facts); err != nil {
		return "", err
	}
	return b.String(), nil
}

// renderValues renders every string in values (maps and lists are walked), in place.
func (r renderer) renderValues(name string, v any) (any, error) {
	switch v := v.(type) {
	case string:
		return r.render(name, v)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			out, err := r.renderValues(name+"."+k, v[k])
			if err != nil {
				return nil, err
			}
			v[k] = out
		}
		return v, nil
	case []any:
		for i := range v {
			out, err := r.renderValues(fmt.Sprintf("%s[%d]", name, i), v[i])
			if err != nil {
				return nil, err
			}
			v[i] = out
		}
		return v, nil
	default:
		return v, nil
	}
}
