package testcluster

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

func TestNewTestCluster(t *testing.T) {
	base := func() *options { return &options{namespace: "default", wait: 10 * time.Minute} }
	tests := []struct {
		name   string
		tcName string
		opts   func(o *options)
		want   *v1alpha1.TestCluster
	}{
		{
			name: "pool, generated name",
			opts: func(o *options) { o.pool = "ci" },
			want: &v1alpha1.TestCluster{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "ci-"},
				Spec:       v1alpha1.TestClusterSpec{PoolRef: "ci"},
			},
		},
		{
			name:   "template, named, every option",
			tcName: "e2e",
			opts: func(o *options) {
				o.namespace, o.template, o.ttl, o.maxLifetime = "team-a", "big", 30*time.Minute, 2*time.Hour
				o.priority, o.labels, o.wait, o.kubeconfigOut = "high", []string{"repo=app", "example.com/pr=12"}, time.Minute, "kc"
			},
			want: &v1alpha1.TestCluster{
				ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "e2e", Labels: map[string]string{"repo": "app", "example.com/pr": "12"}},
				Spec: v1alpha1.TestClusterSpec{
					TemplateRef: "big",
					TTL:         &metav1.Duration{Duration: 30 * time.Minute},
					MaxLifetime: &metav1.Duration{Duration: 2 * time.Hour},
					Priority:    v1alpha1.PriorityHigh,
				},
			},
		},
		{
			name: "wait 0 without kubeconfig-out",
			opts: func(o *options) { o.pool, o.wait, o.priority = "ci", 0, "Low" },
			want: &v1alpha1.TestCluster{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "ci-"},
				Spec:       v1alpha1.TestClusterSpec{PoolRef: "ci", Priority: v1alpha1.PriorityLow},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base()
			tt.opts(o)
			got, err := newTestCluster(tt.tcName, o)
			if err != nil {
				t.Fatalf("newTestCluster: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("TestCluster mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestNewTestClusterErrors(t *testing.T) {
	tests := []struct {
		name   string
		tcName string
		opts   func(o *options)
		want   []string // substrings of the error
	}{
		{name: "neither pool nor template", opts: func(o *options) {}, want: []string{"--pool POOL", "--template TEMPLATE", "ephemera get pools"}},
		{name: "both pool and template", opts: func(o *options) { o.pool, o.template = "a", "b" }, want: []string{"--pool and --template exclude each other"}},
		{name: "bad name", tcName: "Bad_Name", opts: func(o *options) { o.pool = "ci" }, want: []string{`invalid TestCluster name "Bad_Name"`, "lowercase"}},
		{name: "bad pool", opts: func(o *options) { o.pool = "CI" }, want: []string{`--pool "CI"`}},
		{name: "long template", opts: func(o *options) { o.template = strings.Repeat("t", 64) }, want: []string{"--template", "no more than 63"}},
		{name: "short ttl", opts: func(o *options) { o.pool, o.ttl = "ci", time.Millisecond }, want: []string{"--ttl 1ms", "at least 1s"}},
		{name: "negative max lifetime", opts: func(o *options) { o.pool, o.maxLifetime = "ci", -time.Hour }, want: []string{"--max-lifetime -1h0m0s", "at least 1s"}},
		{name: "bad priority", opts: func(o *options) { o.pool, o.priority = "ci", "urgent" }, want: []string{`--priority "urgent"`, "High, Normal or Low"}},
		{name: "bad label", opts: func(o *options) { o.pool, o.labels = "ci", []string{"repo"} }, want: []string{`--label "repo"`, "KEY=VALUE"}},
		{name: "negative wait", opts: func(o *options) { o.pool, o.wait = "ci", -time.Second }, want: []string{"--wait -1s", "negative"}},
		{name: "kubeconfig-out without wait", opts: func(o *options) { o.pool, o.wait, o.kubeconfigOut = "ci", 0, "kc" }, want: []string{"--kubeconfig-out needs --wait"}},
		{name: "empty namespace", opts: func(o *options) { o.pool, o.namespace = "ci", "" }, want: []string{"--namespace must not be empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &options{namespace: "default", wait: time.Minute}
			tt.opts(o)
			got, err := newTestCluster(tt.tcName, o)
			if err == nil {
				t.Fatalf("newTestCluster = %+v, want an error", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
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
		{name: "several", pairs: []string{"repo=app", "ephemera.dev/pipeline=42", "empty="}, want: map[string]string{"repo": "app", "ephemera.dev/pipeline": "42", "empty": ""}},
		{name: "value with equals sign is cut at the first", pairs: []string{"a=b=c"}, wantErr: `invalid value "b=c"`},
		{name: "same pair twice", pairs: []string{"a=b", "a=b"}, want: map[string]string{"a": "b"}},
		{name: "conflicting pair", pairs: []string{"a=b", "a=c"}, wantErr: `key "a" given twice, with values "b" and "c"`},
		{name: "no equals sign", pairs: []string{"repo"}, wantErr: "want KEY=VALUE"},
		{name: "empty key", pairs: []string{"=v"}, wantErr: `invalid key ""`},
		{name: "bad key", pairs: []string{"has space=v"}, wantErr: `invalid key "has space"`},
		{name: "bad prefix", pairs: []string{"Not_DNS/k=v"}, wantErr: `invalid key "Not_DNS/k"`},
		{name: "value too long", pairs: []string{"k=" + strings.Repeat("v", 64)}, wantErr: "must be no more than 63"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLabels(tt.pairs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseLabels error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseLabels: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("labels mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestParsePriority(t *testing.T) {
	for in, want := range map[string]v1alpha1.Priority{"": "", "High": "High", "normal": "Normal", "LOW": "Low"} {
		got, err := parsePriority(in)
		if err != nil || got != want {
			t.Errorf("parsePriority(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
