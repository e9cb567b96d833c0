package addons

import (
	"context"
	"errors"
	"time"

	"k8s.io/client-go/rest"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// Plan is the resolved, rendered and validated form of spec.addons: every file read, every template
// rendered, every values document parsed, every chart loaded. Make one with Prepare.
type Plan struct {
	phases []plannedPhase
}

type plannedPhase struct {
	name    string
	timeout time.Duration
}

// Phase event kinds.
const (
	PhaseStarted = "Started"
	PhaseReady   = "Ready"
	PhaseFailed  = "Failed"
)

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Progress, if set, is called when a phase starts, is ready or fails.
	Progress func(PhaseEvent)
}

// PhaseEvent reports a phase's progress.
type PhaseEvent struct {
	// Phase is the phase's name.
	Phase string
	// Kind is PhaseStarted, PhaseReady or PhaseFailed.
	Kind string
	// Duration is the time since the phase started (zero when Started).
	Duration time.Duration
	// Err is the *PhaseError of a Failed phase.
	Err error
}

// Result is what Apply did.
type Result struct {
	// Phases are the phases that became ready, in order.
	Phases []PhaseResult
}

// PhaseResult is one ready phase.
type PhaseResult struct {
	// Name is the phase's name.
	Name string
	// Duration is how long the phase took, installing and waiting.
	Duration time.Duration
}

// Validate checks what needs no cluster facts: paths exist, YAML parses, templates parse, values
// parse, local charts load. `create cluster` calls it before creating anything.
func Validate(ctx context.Context, phases []v1alpha1.AddonPhase, src Sources) error {
	return errors.New("addons: Validate not yet implemented")
}

// Prepare resolves, renders and validates phases with the cluster's facts. It fails on a missing
// path, malformed YAML or values, an unknown template key or a chart that does not load, before
// anything is created.
func Prepare(ctx context.Context, phases []v1alpha1.AddonPhase, facts Facts, src Sources) (*Plan, error) {
	return nil, errors.New("addons: Prepare not yet implemented")
}

// Apply installs the plan's phases in order against the cluster cfg points to, each phase's items
// in parallel, and waits for each phase to be ready within its timeout (default 10m) before the
// next starts. A second Apply of the same plan changes nothing: manifests are applied server-side
// (field manager "ephemera"); a chart is installed if absent, upgraded only if its version or values
// differ from the deployed release, skipped otherwise. A failed phase's error is a *PhaseError.
func Apply(ctx context.Context, cfg *rest.Config, plan *Plan, opts ApplyOptions) (Result, error) {
	return Result{}, errors.New("addons: Apply not yet implemented")
}
