package object

import (
	"strings"
	"testing"
)

func TestScope(t *testing.T) {
	tests := []struct {
		name    string
		opts    GetOptions
		names   []string
		wantNS  string
		wantErr string
	}{
		{name: "namespace", opts: GetOptions{Namespace: "team-a"}, wantNS: "team-a"},
		{name: "all namespaces", opts: GetOptions{Namespace: "default", AllNamespaces: true}, wantNS: ""},
		{name: "names with -A", opts: GetOptions{AllNamespaces: true}, names: []string{"x"}, wantErr: "cannot be combined with names"},
		{name: "bad output", opts: GetOptions{Namespace: "default", Output: "table"}, wantErr: `unknown output format "table"`},
		{name: "empty namespace", opts: GetOptions{}, wantErr: "--namespace must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, err := tt.opts.scope(tt.names, "TestClusters")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("scope error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || ns != tt.wantNS {
				t.Errorf("scope = %q, %v; want %q", ns, err, tt.wantNS)
			}
		})
	}
}
