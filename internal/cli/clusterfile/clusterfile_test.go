package clusterfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

const fullTemplate = `apiVersion: ephemera.dev/v1alpha1
kind: ClusterTemplate
metadata:
  name: demo
spec:
  kubernetesVersion: v1.36.3
  nodes:
    simulated: 3
  network:
    serviceSubnet: 10.96.0.0/16
    podSubnet: 10.244.0.0/16
`

func int32p(n int32) *int32 { return &n }

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		wantName string
		wantSpec v1alpha1.ClusterTemplateSpec
	}{
		{
			name:     "full",
			data:     fullTemplate,
			wantName: "demo",
			wantSpec: v1alpha1.ClusterTemplateSpec{
				KubernetesVersion: "v1.36.3",
				Nodes:             v1alpha1.NodesSpec{Simulated: int32p(3)},
				Network: v1alpha1.NetworkSpec{
					ServiceSubnet: "10.96.0.0/16",
					PodSubnet:     "10.244.0.0/16",
				},
			},
		},
		{
			name: "minimal leaves defaults unset",
			data: "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: min\nspec: {}\n",
			// Simulated stays nil so SimulatedCount applies the default.
			wantName: "min",
		},
		{
			name:     "zero simulated nodes is kept, not defaulted",
			data:     "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: zero\nspec:\n  nodes:\n    simulated: 0\n",
			wantName: "zero",
			wantSpec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Simulated: int32p(0)}},
		},
		{
			name:     "provider",
			data:     "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: p\nspec:\n  provider: local\n",
			wantName: "p",
			wantSpec: v1alpha1.ClusterTemplateSpec{Provider: v1alpha1.ProviderLocal},
		},
		{
			name:     "JSON is YAML",
			data:     `{"apiVersion":"ephemera.dev/v1alpha1","kind":"ClusterTemplate","metadata":{"name":"js"},"spec":{"nodes":{"simulated":2}}}`,
			wantName: "js",
			wantSpec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Simulated: int32p(2)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.data))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.APIVersion != "ephemera.dev/v1alpha1" || got.Kind != "ClusterTemplate" {
				t.Errorf("TypeMeta = %+v, want ephemera.dev/v1alpha1 ClusterTemplate", got.TypeMeta)
			}
			if got.Name != tt.wantName {
				t.Errorf("Name = %q, want %q", got.Name, tt.wantName)
			}
			if d := cmp.Diff(tt.wantSpec, got.Spec); d != "" {
				t.Errorf("Spec mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseTemplateErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		// want are substrings the error must contain.
		want []string
	}{
		{
			name: "empty",
			data: "",
			want: []string{"file is empty", "ephemera.dev/v1alpha1"},
		},
		{
			name: "only whitespace",
			data: " \n\t\n  \n",
			want: []string{"file is empty"},
		},
		{
			name: "unknown nested field names its full path",
			data: "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: x\nspec:\n  nodes:\n    simulatd: 3\n",
			want: []string{`unknown field "spec.nodes.simulatd"`, "invalid ClusterTemplate", "--help"},
		},
		{
			name: "every unknown field is reported",
			data: "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: x\nspec:\n  foo: 1\n  network:\n    podCIDR: 10.0.0.0/8\n",
			want: []string{`unknown field "spec.foo"`, `unknown field "spec.network.podCIDR"`},
		},
		{
			name: "unknown top-level field",
			data: "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: x\nspecs: {}\n",
			want: []string{`unknown field "specs"`},
		},
		{
			name: "field names are case-sensitive",
			data: "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: x\nspec:\n  KubernetesVersion: v1.36.3\n",
			want: []string{`unknown field "spec.KubernetesVersion"`},
		},
		{
			name: "invalid YAML",
			data: "apiVersion: ephemera.dev/v1alpha1\nkind: [ClusterTemplate\n",
			want: []string{"invalid YAML"},
		},
		{
			name: "tab indentation",
			data: "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nspec:\n\tnodes: {}\n",
			want: []string{"invalid YAML"},
		},
		{
			name: "wrong type",
			data: "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: x\nspec:\n  nodes:\n    simulated: three\n",
			want: []string{"invalid ClusterTemplate", "spec.nodes.simulated"},
		},
		{
			name: "not a mapping",
			data: "- a\n- b\n",
			want: []string{"invalid ClusterTemplate"},
		},
		{
			name: "wrong kind",
			data: "apiVersion: ephemera.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: x\n",
			want: []string{"want apiVersion ephemera.dev/v1alpha1 and kind ClusterTemplate", `kind "Cluster"`},
		},
		{
			name: "wrong apiVersion",
			data: "apiVersion: ephemera.dev/v1beta1\nkind: ClusterTemplate\nmetadata:\n  name: x\n",
			want: []string{"want apiVersion ephemera.dev/v1alpha1", `apiVersion "ephemera.dev/v1beta1"`},
		},
		{
			name: "apiVersion without group",
			data: "apiVersion: v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: x\n",
			want: []string{`apiVersion "v1alpha1"`},
		},
		{
			name: "missing apiVersion and kind",
			data: "metadata:\n  name: x\nspec: {}\n",
			want: []string{`got apiVersion "" and kind ""`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.data))
			if err == nil {
				t.Fatalf("Parse = %+v, want error containing %q", got, tt.want)
			}
			if got != nil {
				t.Errorf("Parse returned %+v along with error", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestParseTemplateDuplicateField: a key given twice is an error, not a
// silent "last one wins" (Parse converts with YAMLToJSONStrict).
func TestParseTemplateDuplicateField(t *testing.T) {
	data := "apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nmetadata:\n  name: x\nspec:\n  nodes:\n    simulated: 1\n    simulated: 2\n"
	got, err := Parse([]byte(data))
	if err == nil {
		t.Fatalf("Parse = %+v, want an error for the duplicate key", got.Spec)
	}
	if !strings.Contains(err.Error(), "simulated") {
		t.Errorf("error %q does not name the duplicate key simulated", err)
	}
}

func TestReadTemplate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(good, []byte(fullTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: ephemera.dev/v1alpha1\nkind: ClusterTemplate\nspec:\n  nodes:\n    simulatd: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	stdinErr := errors.New("stdin broke")

	tests := []struct {
		name      string
		path      string
		stdin     io.Reader
		wantName  string
		wantErr   []string
		wantErrIs error
	}{
		{name: "stdin", path: "-", stdin: strings.NewReader(fullTemplate), wantName: "demo"},
		{name: "file", path: good, stdin: strings.NewReader("ignored: stdin is not read for a path"), wantName: "demo"},
		{name: "missing file", path: missing, wantErr: []string{"read cluster file", missing}, wantErrIs: fs.ErrNotExist},
		{name: "invalid file names the path", path: bad, wantErr: []string{"cluster file " + bad + ":", `unknown field "spec.nodes.simulatd"`}},
		{name: "empty stdin", path: "-", stdin: strings.NewReader(""), wantErr: []string{"cluster file -:", "file is empty"}},
		{name: "stdin read error", path: "-", stdin: iotest.ErrReader(stdinErr), wantErr: []string{"read cluster file"}, wantErrIs: stdinErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(tt.path, tt.stdin)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				if got.Name != tt.wantName {
					t.Errorf("Name = %q, want %q", got.Name, tt.wantName)
				}
				if got.Spec.Nodes.SimulatedCount() != 3 {
					t.Errorf("simulated nodes = %d, want 3", got.Spec.Nodes.SimulatedCount())
				}
				return
			}
			if err == nil {
				t.Fatalf("Read = %+v, want error", got)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErrIs)
			}
		})
	}
}

func TestParseLabels(t *testing.T) {
	tests := []struct {
		name    string
		pairs   []string
		want    map[string]string
		wantErr string
	}{
		{name: "none", pairs: nil, want: nil},
		{name: "several", pairs: []string{"repo=app", "example.com/team=x", "empty="}, want: map[string]string{"repo": "app", "example.com/team": "x", "empty": ""}},
		{name: "same pair twice", pairs: []string{"a=b", "a=b"}, want: map[string]string{"a": "b"}},
		{name: "conflicting pair", pairs: []string{"a=b", "a=c"}, wantErr: `key "a" given twice, with values "b" and "c"`},
		{name: "no equals sign", pairs: []string{"pr"}, wantErr: "want KEY=VALUE"},
		{name: "bad key", pairs: []string{"has space=v"}, wantErr: `invalid key "has space"`},
		{name: "bad value", pairs: []string{"a=b=c"}, wantErr: `invalid value "b=c"`},
		{name: "ephemera's own", pairs: []string{"ephemera.dev/pool=p"}, wantErr: "keys under ephemera.dev/ are ephemera's own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLabels(tt.pairs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLabels error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLabels: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("labels mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestDir(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"":                     wd,
		"-":                    wd,
		"t.yaml":               wd,
		"sub/t.yaml":           filepath.Join(wd, "sub"),
		"/etc/ephemera/t.yaml": "/etc/ephemera",
		"../other/dir/t.yaml":  filepath.Join(filepath.Dir(wd), "other", "dir"),
	} {
		if got, err := Dir(path); err != nil || got != want {
			t.Errorf("Dir(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
}
