package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestCLIErrorsAndListings covers the commands that need no cluster: every
// misuse fails with a message that says what was wrong, and the listings
// are machine-readable.
func TestCLIErrorsAndListings(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", "cluster"}, "name the clusters to delete, or pass --all"},
		{[]string{"delete", "cluster", "a", "--all"}, "name the clusters to delete, or pass --all"},
		{[]string{"get", "clusters", "nope"}, `cluster not found: "nope"`},
		{[]string{"get", "kubeconfig", "nope"}, `cluster not found: "nope"`},
		{[]string{"get", "clusters", "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"kube", "path", "bogus"}, `unknown component "bogus"`},
		{[]string{"kube", "path", "--version", "v1.99.0"}, "supported minors are v1.33 to v1.36"},
		{[]string{"kube", "install", "--version", "1.36"}, `invalid Kubernetes version "1.36"`},
		{[]string{"create", "cluster", "x", "--no-such-flag"}, "Run 'ephemera create cluster --help' for usage"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := h.run(context.Background(), tc.args...)
			if r.err == nil || !strings.Contains(r.stderr, "ERROR: ") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want a failure saying %q, got:\n%s", tc.want, r)
			}
		})
	}

	var versions []struct {
		Version string `json:"version"`
		Default bool   `json:"default"`
		Current bool   `json:"current"`
		Dir     string `json:"dir"`
	}
	r := h.must("kube", "list", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &versions); err != nil {
		t.Fatalf("kube list -o json: %v\n%s", err, r.stdout)
	}
	found := false
	for _, v := range versions {
		if v.Version == newVersion && v.Default && v.Current && v.Dir != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("kube list does not show %s as installed default: %+v", newVersion, versions)
	}
	if r := h.must("get", "clusters", "-o", "json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("get clusters -o json with no clusters = %q, want []", r.stdout)
	}
}
