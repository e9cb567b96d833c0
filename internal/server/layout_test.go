package server

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/provider"
	"github.com/ephemera-dev/ephemera/internal/provider/fake"
	"github.com/ephemera-dev/ephemera/internal/provider/local"
)

// TestLayoutPaths pins every path of the layout: users' state dirs, their
// scripts (server/kubeconfig) and running servers depend on them, so a
// change here must be deliberate and migrate old state dirs.
func TestLayoutPaths(t *testing.T) {
	for _, tt := range []struct {
		stateDir string
		want     map[string]string
	}{
		{
			stateDir: "/var/lib/ephemera",
			want: map[string]string{
				"Dir":                     "/var/lib/ephemera/server",
				"Lock":                    "/var/lib/ephemera/server/serve.lock",
				"Kubeconfig":              "/var/lib/ephemera/server/kubeconfig",
				"Artifacts":               "/var/lib/ephemera/server/artifacts",
				"ManagementPlaneStateDir": "/var/lib/ephemera/server",
				"LeaseKubeconfigs":        "/var/lib/ephemera/kubeconfigs",
				"LeaseKubeconfig":         "/var/lib/ephemera/kubeconfigs/team-a/ci-x7k2p",
			},
		},
		{
			// A relative state dir (--state-dir state) gives relative
			// paths, as before the layout had a type.
			stateDir: "state",
			want: map[string]string{
				"Dir":                     "state/server",
				"Lock":                    "state/server/serve.lock",
				"Kubeconfig":              "state/server/kubeconfig",
				"Artifacts":               "state/server/artifacts",
				"ManagementPlaneStateDir": "state/server",
				"LeaseKubeconfigs":        "state/kubeconfigs",
				"LeaseKubeconfig":         "state/kubeconfigs/team-a/ci-x7k2p",
			},
		},
	} {
		t.Run(tt.stateDir, func(t *testing.T) {
			l := NewLayout(tt.stateDir)
			got := map[string]string{
				"Dir":                     l.Dir(),
				"Lock":                    l.Lock(),
				"Kubeconfig":              l.Kubeconfig(),
				"Artifacts":               l.Artifacts(),
				"ManagementPlaneStateDir": l.ManagementPlaneStateDir(),
				"LeaseKubeconfigs":        l.LeaseKubeconfigs(),
				"LeaseKubeconfig":         l.LeaseKubeconfig("team-a", "ci-x7k2p"),
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("paths (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLayoutManagementPlane(t *testing.T) {
	clusters := local.Options{
		StateDir:    "/var/lib/ephemera",
		Cache:       kube.Cache{Dir: "/var/cache/ephemera"},
		Supervisor:  []string{"/usr/bin/ephemera", "supervise"},
		HostNetwork: "10.99.0.0/16",
	}
	l := NewLayout("/var/lib/ephemera")
	mp, err := l.ManagementPlane(provider.NewRegistry(local.New(clusters)))
	if err != nil {
		t.Fatalf("ManagementPlane: %v", err)
	}
	if mp.KubeconfigPath != "/var/lib/ephemera/server/kubeconfig" {
		t.Errorf("KubeconfigPath = %q, want /var/lib/ephemera/server/kubeconfig", mp.KubeconfigPath)
	}
	// The registry's local provider, moved to the server's dir and made
	// durable, reaching the clusters; all else as the clusters' provider
	// has it.
	want := clusters
	want.StateDir, want.Durable = "/var/lib/ephemera/server", true
	want.Network.ReachClusters = true
	// It shares an advertised address with the clusters of the state dir.
	want.AdvertiseWith = []string{"/var/lib/ephemera"}
	if diff := cmp.Diff(want, mp.Provider.Options()); diff != "" {
		t.Errorf("management plane provider's options (-want +got):\n%s", diff)
	}

	t.Run("needs the local provider", func(t *testing.T) {
		for name, r := range map[string]*provider.Registry{
			"none registered":  provider.NewRegistry(),
			"only another":     provider.NewRegistry(fake.New()),
			"another as local": provider.NewRegistry(namedLocal{fake.New()}),
		} {
			_, err := l.ManagementPlane(r)
			if err == nil || !strings.Contains(err.Error(), "the embedded management plane needs the local provider") || !errors.Is(err, provider.ErrUnsupported) {
				t.Errorf("%s: error = %v, want the embedded management plane needs the local provider (ErrUnsupported)", name, err)
			}
		}
		mp, err := l.ManagementPlane(provider.NewRegistry(fake.New(), local.New(clusters)))
		if err != nil || mp.Provider.Options().StateDir != "/var/lib/ephemera/server" {
			t.Errorf("with local among others: %v, %v; want the local provider under /var/lib/ephemera/server", mp, err)
		}
	})
}

// namedLocal is a provider registered under the local provider's name that
// is not it.
type namedLocal struct{ *fake.Provider }

func (namedLocal) Name() string { return local.Name }
