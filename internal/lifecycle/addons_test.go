package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/provider"
)

func TestFacts(t *testing.T) {
	tests := []struct {
		name    string
		cluster provider.Cluster
		labels  map[string]string
		want    addons.Facts
	}{
		{
			name:    "with ingress and labels",
			cluster: provider.Cluster{Name: "pr-42", KubernetesVersion: "v1.36.3", Ingress: &v1alpha1.IngressStatus{Address: "172.30.0.1", Domain: "pr-42.ci.example"}},
			labels:  map[string]string{"pr": "42", "repo": "app"},
			want: addons.Facts{Name: "pr-42", KubernetesVersion: "v1.36.3", Ingress: addons.Ingress{Address: "172.30.0.1", Domain: "pr-42.ci.example"},
				Labels: map[string]string{"pr": "42", "repo": "app"}},
		},
		{
			// Labels is never nil: {{ .Labels.pr }} is a missing key, an
			// error the engine reports, not a nil map.
			name:    "no ingress, no labels",
			cluster: provider.Cluster{Name: "c", KubernetesVersion: "v1.35.4"},
			want:    addons.Facts{Name: "c", KubernetesVersion: "v1.35.4", Labels: map[string]string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Facts(&tt.cluster, tt.labels)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Facts mismatch (-want +got):\n%s", d)
			}
			if tt.labels != nil {
				got.Labels["pr"] = "changed"
				if tt.labels["pr"] == "changed" {
					t.Error("Facts shares the caller's label map")
				}
			}
		})
	}
}

var threePhases = []v1alpha1.AddonPhase{
	{Name: "operators", Charts: []v1alpha1.ChartSource{{Name: "cert-manager"}, {Name: "external-dns"}}},
	{Name: "crs", Manifests: []v1alpha1.ManifestSource{{Inline: "x"}}},
	{Name: "apps", Manifests: []v1alpha1.ManifestSource{{Inline: "x"}, {Path: "y"}}, Charts: []v1alpha1.ChartSource{{Name: "web"}}},
	{Name: "empty"},
}

func TestPhaseStep(t *testing.T) {
	for phase, want := range map[string]string{
		"operators": "Installing addons: phase operators (1 of 4: 2 charts cert-manager, external-dns)",
		"crs":       "Installing addons: phase crs (2 of 4: 1 manifest source)",
		"apps":      "Installing addons: phase apps (3 of 4: 2 manifest sources, 1 chart web)",
		"empty":     "Installing addons: phase empty (4 of 4: nothing to install)",
		"unknown":   "Installing addons: phase unknown",
	} {
		if got := PhaseStep(threePhases, phase); got != want {
			t.Errorf("PhaseStep(%q) = %q, want %q", phase, got, want)
		}
	}
	if got, want := PhaseNames(threePhases), "operators, crs, apps, empty"; got != want {
		t.Errorf("PhaseNames = %q, want %q", got, want)
	}
	r := addons.Result{Phases: []addons.PhaseResult{{Name: "operators", Duration: 12345 * time.Millisecond}, {Name: "crs", Duration: 250 * time.Millisecond}, {Name: "apps", Duration: 95 * time.Second}}}
	if got, want := Durations(r), "operators 12.35s, crs 250ms, apps 1m35s"; got != want {
		t.Errorf("Durations = %q, want %q", got, want)
	}
}

// recordingReporter records the steps it is given.
type recordingReporter struct {
	mu    sync.Mutex
	calls []string
}

func (r *recordingReporter) Start(step string) { r.add("start " + step) }
func (r *recordingReporter) Update(d string)   { r.add("update " + d) }
func (r *recordingReporter) End(ok bool)       { r.add(fmt.Sprintf("end %t", ok)) }
func (r *recordingReporter) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func TestPhaseProgress(t *testing.T) {
	rep := &recordingReporter{}
	var passed []string
	report := phaseProgress(threePhases, rep, func(ev addons.PhaseEvent) { passed = append(passed, ev.Phase+" "+ev.Kind) })
	perr := &addons.PhaseError{Phase: "crs", Reason: "boom"}
	for _, ev := range []addons.PhaseEvent{
		{Phase: "operators", Kind: addons.PhaseStarted},
		{Phase: "operators", Kind: addons.PhaseReady, Duration: time.Second},
		{Phase: "crs", Kind: addons.PhaseStarted},
		{Phase: "crs", Kind: addons.PhaseFailed, Duration: time.Second, Err: perr},
	} {
		report(ev)
	}
	want := []string{
		"start Installing addons: phase operators (1 of 4: 2 charts cert-manager, external-dns)", "end true",
		"start Installing addons: phase crs (2 of 4: 1 manifest source)", "end false",
	}
	if d := cmp.Diff(want, rep.calls); d != "" {
		t.Errorf("reporter calls (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"operators Started", "operators Ready", "crs Started", "crs Failed"}, passed); d != "" {
		t.Errorf("events passed on (-want +got):\n%s", d)
	}
	// Without a callback, only the reporter hears.
	phaseProgress(threePhases, rep, nil)(addons.PhaseEvent{Phase: "apps", Kind: addons.PhaseStarted})
}

// countingProvider counts the creates of a fakeProvider.
type countingProvider struct {
	fakeProvider
	creates int
}

func (c *countingProvider) Create(ctx context.Context, name string, spec v1alpha1.ClusterTemplateSpec, opts provider.CreateOptions) error {
	c.creates++
	return c.fakeProvider.Create(ctx, name, spec, opts)
}

func TestCreateChecksAddonsBeforeCreating(t *testing.T) {
	// A manifest path that does not exist: refused before the provider
	// is asked for anything.
	spec := v1alpha1.ClusterTemplateSpec{Addons: []v1alpha1.AddonPhase{{Name: "operators", Manifests: []v1alpha1.ManifestSource{{Path: "does-not-exist.yaml"}}}}}
	p := &countingProvider{}
	rep := &recordingReporter{}
	_, err := Create(context.Background(), p, "c", spec, CreateOptions{Progress: rep, Addons: AddonOptions{Sources: addons.Sources{Dir: t.TempDir()}}})
	if err == nil {
		t.Fatal("Create succeeded with addons naming a missing file")
	}
	if !strings.HasPrefix(err.Error(), "addons: ") || !errors.Is(err, ErrAddons) {
		t.Errorf("error %q does not say it is about the addons", err)
	}
	var ce *CreateError
	if errors.As(err, &ce) {
		t.Errorf("error %q is a CreateError: nothing was created", err)
	}
	if p.creates != 0 || len(p.deleted) != 0 {
		t.Errorf("provider saw %d creates and deletes %v; want none", p.creates, p.deleted)
	}
	if want := []string{"start Checking the addons (operators)", "end false"}; !cmp.Equal(want, rep.calls) {
		t.Errorf("reporter calls %q, want %q", rep.calls, want)
	}
}

func TestInstallAddonsRefusesClustersNotRunning(t *testing.T) {
	p := &fakeProvider{phase: provider.PhaseBroken}
	_, err := InstallAddons(context.Background(), p, "c", threePhases, AddonOptions{}, nil)
	if !errors.Is(err, ErrClusterNotRunning) || !strings.Contains(err.Error(), `cluster "c" is Broken: etcd crashed`) {
		t.Errorf("InstallAddons on a broken cluster: %v, want ErrClusterNotRunning saying why", err)
	}
}
