package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/kube"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

func int32Ptr(n int32) *int32 { return &n }

// newTestProvider returns a provider with an empty state dir and an empty
// Kubernetes cache.
func newTestProvider(t *testing.T) *Provider {
	t.Helper()
	return New(Options{StateDir: t.TempDir(), Cache: kube.Cache{Dir: t.TempDir()}})
}

func TestValidate(t *testing.T) {
	valid := v1alpha1.ClusterTemplateSpec{}
	tests := []struct {
		name    string
		cluster string
		spec    v1alpha1.ClusterTemplateSpec
		want    error
		msg     string // in the error, when set
	}{
		// Names.
		{name: "valid name", cluster: "dev-1", spec: valid, want: kube.ErrNotInstalled, msg: kube.DefaultVersion},
		{name: "40 chars", cluster: strings.Repeat("a", 40), spec: valid, want: kube.ErrNotInstalled},
		{name: "41 chars", cluster: strings.Repeat("a", 41), spec: valid, want: provider.ErrInvalidSpec, msg: "40 characters"},
		{name: "upper case", cluster: "Dev", spec: valid, want: provider.ErrInvalidSpec, msg: `invalid cluster name "Dev": a lowercase RFC 1123 label`},
		{name: "underscore", cluster: "my_cluster", spec: valid, want: provider.ErrInvalidSpec},
		{name: "empty", cluster: "", spec: valid, want: provider.ErrInvalidSpec},
		{name: "leading hyphen", cluster: "-dev", spec: valid, want: provider.ErrInvalidSpec},
		{name: "dot", cluster: "a.b", spec: valid, want: provider.ErrInvalidSpec},
		{name: "path", cluster: "../dev", spec: valid, want: provider.ErrInvalidSpec},

		// Specs.
		{name: "provider local", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Provider: v1alpha1.ProviderLocal}, want: kube.ErrNotInstalled},
		{name: "provider gke", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Provider: "gke"}, want: provider.ErrInvalidSpec, msg: `"gke"`},
		{name: "simulated -1", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Simulated: int32Ptr(-1)}}, want: provider.ErrInvalidSpec, msg: "-1 simulated nodes"},
		{name: "simulated 0", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Simulated: int32Ptr(0)}}, want: kube.ErrNotInstalled},
		{name: "simulated 1000", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Simulated: int32Ptr(1000)}}, want: kube.ErrNotInstalled},
		{name: "simulated 1001", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Simulated: int32Ptr(1001)}}, want: provider.ErrInvalidSpec, msg: "1001 simulated nodes"},
		{name: "custom subnets", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Network: v1alpha1.NetworkSpec{ServiceSubnet: "10.0.0.0/24", PodSubnet: "10.1.0.0/16"}}, want: kube.ErrNotInstalled},
		{name: "serviceSubnet without prefix", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Network: v1alpha1.NetworkSpec{ServiceSubnet: "10.96.0.0"}}, want: provider.ErrInvalidSpec, msg: "network.serviceSubnet"},
		{name: "serviceSubnet garbage", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Network: v1alpha1.NetworkSpec{ServiceSubnet: "not-a-cidr"}}, want: provider.ErrInvalidSpec, msg: "network.serviceSubnet"},
		{name: "podSubnet prefix too long", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Network: v1alpha1.NetworkSpec{PodSubnet: "10.244.0.0/33"}}, want: provider.ErrInvalidSpec, msg: "network.podSubnet"},
		{name: "podSubnet garbage", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Network: v1alpha1.NetworkSpec{PodSubnet: "10.244.0.0/x"}}, want: provider.ErrInvalidSpec, msg: "network.podSubnet"},

		// Real nodes.
		{name: "real 1", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: int32Ptr(1)}}, want: kube.ErrNotInstalled},
		{name: "real 2", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: int32Ptr(2)}}, want: provider.ErrInvalidSpec, msg: "0 or 1"},
		{name: "real -1", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: int32Ptr(-1)}}, want: provider.ErrInvalidSpec, msg: "-1 real nodes"},
		{name: "no nodes: control plane only", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Real: int32Ptr(0), Simulated: int32Ptr(0)}}, want: kube.ErrNotInstalled},

		// Versions.
		{name: "version not installed", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{KubernetesVersion: "v1.35.4"}, want: kube.ErrNotInstalled, msg: "v1.35.4"},
		{name: "version garbage", cluster: "dev", spec: v1alpha1.ClusterTemplateSpec{KubernetesVersion: "latest"}, want: kube.ErrInvalidVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProvider(t)
			inst, err := p.Validate(tt.cluster, tt.spec)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Validate(%q) = %v, want an error wrapping %v", tt.cluster, err, tt.want)
			}
			if inst != nil {
				t.Errorf("Validate returned an installation with an error: %+v", inst)
			}
			// Every refusal is terminal: a version that is not
			// installed is refused until someone installs it.
			if !errors.Is(err, provider.ErrInvalidSpec) {
				t.Errorf("err = %v, want it to wrap provider.ErrInvalidSpec too", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tt.msg)
			}
			if cerr := p.Create(context.Background(), tt.cluster, tt.spec, provider.CreateOptions{}); !errors.Is(cerr, provider.ErrInvalidSpec) || cerr.Error() != err.Error() {
				t.Errorf("Create = %v, want Validate's refusal %v", cerr, err)
			}
			// Bad input changes nothing.
			if entries, err := os.ReadDir(p.stateDir); err != nil || len(entries) != 0 {
				t.Errorf("state dir after Validate: %v, %v; want empty", entries, err)
			}
		})
	}
}

func TestValidateInstalled(t *testing.T) {
	p := newTestProvider(t)
	dir := filepath.Join(p.cache.Dir, "kube", kube.DefaultVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A manifest as kube.Install writes it; the recipe is high enough to
	// count as current while kube's build recipe changes.
	manifest := `{"recipe": 1000000, "version": "` + kube.DefaultVersion + `"}`
	if err := os.WriteFile(filepath.Join(dir, "install.json"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	simulated := v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Simulated: int32Ptr(3)}}
	inst, err := p.Validate("dev", simulated)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if inst.Version != kube.DefaultVersion || inst.Dir != dir {
		t.Errorf("Validate = %+v, want version %s in %s", inst, kube.DefaultVersion, dir)
	}

	// A real node needs the node binaries and images too.
	_, err = p.Validate("dev", v1alpha1.ClusterTemplateSpec{})
	if !errors.Is(err, ErrHostCannotRunNode) || !errors.Is(err, provider.ErrInvalidSpec) {
		t.Fatalf("Validate with a real node = %v, want ErrHostCannotRunNode and provider.ErrInvalidSpec", err)
	}
	if !strings.HasPrefix(err.Error(), ErrHostCannotRunNode.Error()) {
		t.Errorf("err = %q, want the message as checkRealNodeHost made it", err)
	}
	for _, want := range []string{"kubelet, kube-proxy, pause.tar, coredns.tar", "ephemera kube install --version " + kube.DefaultVersion, "--real-nodes 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to mention %q", err, want)
		}
	}

	// Subnets must not overlap the host network.
	overlapping := v1alpha1.ClusterTemplateSpec{Network: v1alpha1.NetworkSpec{PodSubnet: "10.250.0.0/24"}}
	if _, err := p.Validate("dev", overlapping); !errors.Is(err, provider.ErrInvalidSpec) || !strings.Contains(err.Error(), "overlaps the host network 10.250.0.0/16") {
		t.Errorf("Validate with an overlapping pod subnet = %v, want provider.ErrInvalidSpec naming the overlap", err)
	}
	if _, err := p.Validate("dev", v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Simulated: int32Ptr(1)}, Network: overlapping.Network}); err != nil {
		t.Errorf("a simulated-only cluster has no host network to overlap: %v", err)
	}
	tiny := v1alpha1.ClusterTemplateSpec{Network: v1alpha1.NetworkSpec{ServiceSubnet: "10.96.0.0/29"}}
	if _, err := p.Validate("dev", tiny); !errors.Is(err, provider.ErrInvalidSpec) || !strings.Contains(err.Error(), "no 10th address for cluster DNS") {
		t.Errorf("Validate with a /29 service subnet = %v, want provider.ErrInvalidSpec", err)
	}
	bad := New(Options{StateDir: t.TempDir(), Cache: p.cache, HostNetwork: "10.250.0.0/31"})
	if _, err := bad.Validate("dev", v1alpha1.ClusterTemplateSpec{}); !errors.Is(err, provider.ErrInvalidSpec) || !strings.Contains(err.Error(), "/30 or larger") {
		t.Errorf("Validate with host network /31 = %v, want provider.ErrInvalidSpec", err)
	}
}

func TestCheckRealNodeHostNamesWhatIsMissing(t *testing.T) {
	// No program is found on an empty PATH.
	t.Setenv("PATH", t.TempDir())
	inst := &kube.Installation{Version: "v1.36.3", Dir: t.TempDir()}
	err := checkRealNodeHost(inst)
	if !errors.Is(err, ErrHostCannotRunNode) {
		t.Fatalf("checkRealNodeHost = %v, want ErrHostCannotRunNode", err)
	}
	for _, want := range []string{
		"containerd, containerd-shim-runc-v2, ctr, runc, iptables",
		"apt-get install containerd runc iptables iproute2 util-linux conntrack",
		"ephemera kube install --version v1.36.3",
		"--simulated-nodes 3",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q\nwant it to mention %q", err, want)
		}
	}
}

// Fixtures for hand-made cluster dirs.
var (
	testCreatedAt  = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testComponents = []component{{Name: "etcd"}, {Name: "kube-apiserver"}}
)

func testPlan(name string) clusterState {
	return clusterState{
		Name:              name,
		KubernetesVersion: "v1.36.3",
		Spec:              v1alpha1.ClusterTemplateSpec{Nodes: v1alpha1.NodesSpec{Simulated: int32Ptr(3)}},
		CreatedAt:         testCreatedAt,
		Endpoint:          "https://127.0.0.1:23456",
		Ports:             ports{1, 2, 23456, 4, 5, 6},
		Components:        testComponents,
	}
}

func allHealthy() map[string]componentStatus {
	return map[string]componentStatus{
		"etcd":           {PID: 10, Running: true, Healthy: true},
		"kube-apiserver": {PID: 11, Running: true, Healthy: true, Restarts: 2},
	}
}

// makeClusterDir makes an empty cluster dir by hand.
func makeClusterDir(t *testing.T, p *Provider, name string) string {
	t.Helper()
	dir := p.clusterDir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func write(t *testing.T, path string, v any) {
	t.Helper()
	if err := writeJSON(path, v); err != nil {
		t.Fatal(err)
	}
}

// hold takes a lock in dir for the rest of the test.
func hold(t *testing.T, dir, name string) {
	t.Helper()
	l, err := flock.TryLock(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Unlock)
}

func TestObserve(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, dir string)
		phase    provider.Phase
		message  string // substring of the cluster message; "" means empty
		planned  bool   // the plan's fields are reported
		notReady map[string]string
		restarts int // of kube-apiserver
	}{
		{
			name:    "empty dir without locks",
			setup:   func(*testing.T, string) {},
			phase:   provider.PhaseBroken,
			message: "interrupted",
		},
		{
			name: "unreadable plan without locks",
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, clusterFile), []byte("{"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			phase:   provider.PhaseBroken,
			message: "interrupted",
		},
		{
			name:    "create lock held, no plan yet",
			setup:   func(t *testing.T, dir string) { hold(t, dir, createLock) },
			phase:   provider.PhaseCreating,
			message: "certificates",
		},
		{
			name: "create lock held, plan written, no supervisor yet",
			setup: func(t *testing.T, dir string) {
				hold(t, dir, createLock)
				write(t, filepath.Join(dir, clusterFile), testPlan("c"))
			},
			phase:    provider.PhaseCreating,
			message:  "starting the supervisor",
			planned:  true,
			notReady: map[string]string{"etcd": "not started", "kube-apiserver": "not started"},
		},
		{
			name: "plan without status or locks",
			setup: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, clusterFile), testPlan("c"))
			},
			phase:    provider.PhaseBroken,
			message:  "interrupted before the cluster started",
			planned:  true,
			notReady: map[string]string{"etcd": "not started", "kube-apiserver": "not started"},
		},
		{
			name: "supervisor gone, stale lock files",
			setup: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, clusterFile), testPlan("c"))
				write(t, filepath.Join(dir, statusFile), supervisorStatus{Phase: supervisorRunning, Components: allHealthy()})
				// Lock files that nobody holds mean nothing.
				for _, f := range []string{createLock, supervisorLock} {
					if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			},
			phase:    provider.PhaseBroken,
			message:  "processes are gone",
			planned:  true,
			restarts: 2,
		},
		{
			name: "supervised, no status yet",
			setup: func(t *testing.T, dir string) {
				hold(t, dir, supervisorLock)
				write(t, filepath.Join(dir, clusterFile), testPlan("c"))
			},
			phase:    provider.PhaseCreating,
			message:  "etcd not started; kube-apiserver not started",
			planned:  true,
			notReady: map[string]string{"etcd": "not started", "kube-apiserver": "not started"},
		},
		{
			name: "supervised, starting",
			setup: func(t *testing.T, dir string) {
				hold(t, dir, supervisorLock)
				write(t, filepath.Join(dir, clusterFile), testPlan("c"))
				write(t, filepath.Join(dir, statusFile), supervisorStatus{Phase: supervisorStarting, Components: map[string]componentStatus{
					"etcd":           {Running: true, Healthy: true},
					"kube-apiserver": {Running: true},
				}})
			},
			phase:    provider.PhaseCreating,
			message:  "kube-apiserver not healthy yet",
			planned:  true,
			notReady: map[string]string{"kube-apiserver": "not healthy yet"},
		},
		{
			name: "supervised, running and healthy",
			setup: func(t *testing.T, dir string) {
				hold(t, dir, supervisorLock)
				write(t, filepath.Join(dir, clusterFile), testPlan("c"))
				write(t, filepath.Join(dir, statusFile), supervisorStatus{Phase: supervisorRunning, Components: allHealthy()})
			},
			phase:    provider.PhaseRunning,
			planned:  true,
			restarts: 2,
		},
		{
			name: "supervised, one component exited",
			setup: func(t *testing.T, dir string) {
				hold(t, dir, supervisorLock)
				write(t, filepath.Join(dir, clusterFile), testPlan("c"))
				cs := allHealthy()
				cs["kube-apiserver"] = componentStatus{Running: false, LastExit: "exit status 1", Restarts: 2}
				write(t, filepath.Join(dir, statusFile), supervisorStatus{Phase: supervisorRunning, Components: cs})
			},
			phase:    provider.PhaseRunning,
			message:  "degraded: kube-apiserver not running: exit status 1",
			planned:  true,
			notReady: map[string]string{"kube-apiserver": "not running: exit status 1"},
			restarts: 2,
		},
		{
			name: "supervisor failed",
			setup: func(t *testing.T, dir string) {
				hold(t, dir, supervisorLock)
				write(t, filepath.Join(dir, clusterFile), testPlan("c"))
				write(t, filepath.Join(dir, statusFile), supervisorStatus{Phase: supervisorFailed, Message: "etcd did not become healthy within 2m0s", Components: allHealthy()})
			},
			phase:    provider.PhaseBroken,
			message:  "etcd did not become healthy within 2m0s",
			planned:  true,
			restarts: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProvider(t)
			dir := makeClusterDir(t, p, "c")
			tt.setup(t, dir)

			c, err := p.Get(context.Background(), "c")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if c.Name != "c" || c.Provider != Name {
				t.Errorf("Name, Provider = %q, %q; want c, %s", c.Name, c.Provider, Name)
			}
			if c.Phase != tt.phase {
				t.Errorf("Phase = %s (%q), want %s", c.Phase, c.Message, tt.phase)
			}
			if tt.message == "" && c.Message != "" || !strings.Contains(c.Message, tt.message) {
				t.Errorf("Message = %q, want it to contain %q", c.Message, tt.message)
			}

			if !tt.planned {
				if c.Endpoint != "" || len(c.Components) != 0 || c.KubeconfigPath != "" {
					t.Errorf("unplanned cluster reports plan fields: %+v", c)
				}
				return
			}
			if c.KubernetesVersion != "v1.36.3" || c.Endpoint != "https://127.0.0.1:23456" ||
				c.SimulatedNodes != 3 || !c.CreatedAt.Equal(testCreatedAt) ||
				c.KubeconfigPath != filepath.Join(dir, kubeconfigFile) {
				t.Errorf("plan fields not reported: %+v", c)
			}
			if len(c.Components) != len(testComponents) {
				t.Fatalf("Components = %+v, want %d", c.Components, len(testComponents))
			}
			for i, pc := range c.Components {
				if pc.Name != testComponents[i].Name {
					t.Errorf("component %d is %q, want %q (plan order)", i, pc.Name, testComponents[i].Name)
				}
				if want := filepath.Join(dir, logsDir, pc.Name+".log"); pc.Log != want {
					t.Errorf("%s: Log = %q, want %q", pc.Name, pc.Log, want)
				}
				wantMsg, notReady := tt.notReady[pc.Name]
				if pc.Ready == notReady || pc.Message != wantMsg {
					t.Errorf("%s: Ready %v, Message %q; want Ready %v, Message %q", pc.Name, pc.Ready, pc.Message, !notReady, wantMsg)
				}
				if pc.Name == "kube-apiserver" && pc.Restarts != tt.restarts {
					t.Errorf("%s: Restarts = %d, want %d", pc.Name, pc.Restarts, tt.restarts)
				}
			}
		})
	}
}

func TestGetNotFound(t *testing.T) {
	p := newTestProvider(t)
	makeClusterDir(t, p, "exists")
	for _, name := range []string{"missing", "Invalid_Name", "", "..", "../clusters/exists", strings.Repeat("a", 41)} {
		t.Run(name, func(t *testing.T) {
			c, err := p.Get(context.Background(), name)
			if !errors.Is(err, provider.ErrNotFound) {
				t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", name, c, err)
			}
			if c != nil {
				t.Errorf("Get returned a cluster with an error: %+v", c)
			}
		})
	}
}

func TestList(t *testing.T) {
	t.Run("no state dir yet", func(t *testing.T) {
		p := New(Options{StateDir: filepath.Join(t.TempDir(), "missing")})
		cs, err := p.List(context.Background())
		if err != nil || len(cs) != 0 {
			t.Fatalf("List = %+v, %v; want nothing", cs, err)
		}
	})

	t.Run("sorted, broken included, files ignored", func(t *testing.T) {
		p := newTestProvider(t)
		for _, name := range []string{"zeta", "alpha", "mid"} {
			makeClusterDir(t, p, name)
		}
		alpha := p.clusterDir("alpha")
		hold(t, alpha, supervisorLock)
		write(t, filepath.Join(alpha, clusterFile), testPlan("alpha"))
		write(t, filepath.Join(alpha, statusFile), supervisorStatus{Phase: supervisorRunning, Components: allHealthy()})
		hold(t, p.clusterDir("mid"), createLock)
		if err := os.WriteFile(filepath.Join(p.clustersDir(), "stray-file"), nil, 0o644); err != nil {
			t.Fatal(err)
		}

		cs, err := p.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range cs {
			got = append(got, c.Name+"="+string(c.Phase))
		}
		want := []string{"alpha=Running", "mid=Creating", "zeta=Broken"}
		if !slices.Equal(got, want) {
			t.Fatalf("List = %v, want %v", got, want)
		}
	})
}

func TestKubeconfig(t *testing.T) {
	p := newTestProvider(t)
	dir := makeClusterDir(t, p, "ready")
	if err := os.WriteFile(filepath.Join(dir, kubeconfigFile), []byte("apiVersion: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	makeClusterDir(t, p, "interrupted")

	b, err := p.Kubeconfig(context.Background(), "ready")
	if err != nil || string(b) != "apiVersion: v1\n" {
		t.Errorf("Kubeconfig(ready) = %q, %v", b, err)
	}
	if _, err := p.Kubeconfig(context.Background(), "interrupted"); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("Kubeconfig(interrupted) = %v, want an error saying the create was interrupted", err)
	}
	if _, err := p.Kubeconfig(context.Background(), "missing"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Kubeconfig(missing) = %v, want ErrNotFound", err)
	}
}

func TestDelete(t *testing.T) {
	t.Run("missing cluster", func(t *testing.T) {
		p := newTestProvider(t)
		for _, name := range []string{"missing", "Invalid_Name", ".."} {
			if err := p.Delete(context.Background(), name); err != nil {
				t.Errorf("Delete(%q) = %v, want nil", name, err)
			}
		}
		if entries, _ := os.ReadDir(p.stateDir); len(entries) != 0 {
			t.Errorf("Delete of a missing cluster left %v in the state dir", entries)
		}
	})

	t.Run("hand-made dir without processes", func(t *testing.T) {
		p := newTestProvider(t)
		dir := makeClusterDir(t, p, "broken")
		write(t, filepath.Join(dir, clusterFile), testPlan("broken"))
		if err := os.MkdirAll(filepath.Join(dir, logsDir), 0o700); err != nil {
			t.Fatal(err)
		}
		keep := makeClusterDir(t, p, "other")

		if err := p.Delete(context.Background(), "broken"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cluster dir still there: %v", err)
		}
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("Delete removed another cluster: %v", err)
		}
		if _, err := p.Get(context.Background(), "broken"); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("Get after Delete = %v, want ErrNotFound", err)
		}
		if err := p.Delete(context.Background(), "broken"); err != nil {
			t.Errorf("second Delete = %v, want nil", err)
		}
	})

	t.Run("waits for a create under way", func(t *testing.T) {
		p := newTestProvider(t)
		dir := makeClusterDir(t, p, "creating")
		hold(t, dir, createLock)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := p.Delete(ctx, "creating")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Delete = %v, want it to give up when ctx ends", err)
		}
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("Delete removed a cluster whose create is under way: %v", err)
		}
	})
}

// TestNewMakesStateDirAbsolute: the supervisor and the components run in
// the cluster dir, so a relative --state-dir must not reach them as is.
func TestNewMakesStateDirAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	p := New(Options{StateDir: "rel/state"})
	if !filepath.IsAbs(p.clusterDir("x")) {
		t.Errorf("cluster dir %q is relative", p.clusterDir("x"))
	}
}
