package addons

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// Plan is the resolved, rendered and validated form of spec.addons: every file read, every template
// rendered, every values document parsed, every chart loaded. Make one with Prepare.
type Plan struct {
	phases []plannedPhase
}

type plannedPhase struct {
	name      string
	timeout   time.Duration
	manifests []manifestItem
	charts    []chartItem
}

// manifestItem is one ManifestSource's objects, rendered and parsed.
type manifestItem struct {
	source  string
	objects []*unstructured.Unstructured
}

// chartItem is one Helm release to install: its chart loaded, its values rendered.
type chartItem struct {
	release         string
	namespace       string
	createNamespace bool
	chart           *chartv2.Chart
	values          map[string]any
}

// PhaseNames are the plan's phases, in order.
func (p *Plan) PhaseNames() []string {
	names := make([]string, len(p.phases))
	for i, ph := range p.phases {
		names[i] = ph.name
	}
	return names
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

// Validate checks what needs no cluster facts: paths exist, YAML parses, templates parse and name
// only known facts, values parse, local charts load (remote charts are fetched by Prepare).
// `create cluster` calls it before creating anything. labels are the cluster's labels when they
// are known before it exists (a missing one is then an error here already); nil means unknown.
func Validate(ctx context.Context, phases []v1alpha1.AddonPhase, src Sources, labels map[string]string) error {
	r := renderer{facts: validationFacts}
	if labels != nil {
		r.facts.Labels, r.strict = labels, true
	}
	_, err := prepare(ctx, phases, r, src, false)
	return err
}

// Prepare resolves, renders and validates phases with the cluster's facts, fetching remote charts
// (oci:// references, repositories). It fails on a missing path, malformed YAML or values, an
// unknown template key or a chart that does not load, before anything is created. Its errors are
// *PhaseError values naming the phase and the item.
func Prepare(ctx context.Context, phases []v1alpha1.AddonPhase, facts Facts, src Sources) (*Plan, error) {
	return prepare(ctx, phases, renderer{facts: facts, strict: true}, src, true)
}

func prepare(ctx context.Context, phases []v1alpha1.AddonPhase, r renderer, src Sources, fetchRemote bool) (*Plan, error) {
	plan := &Plan{}
	var fetcher *remoteCharts
	defer func() {
		if fetcher != nil {
			fetcher.close()
		}
	}()
	seen := map[string]bool{}
	for _, ph := range phases {
		if seen[ph.Name] {
			return nil, &PhaseError{Phase: ph.Name, Reason: "is named twice"}
		}
		seen[ph.Name] = true
		pp := plannedPhase{name: ph.Name, timeout: time.Duration(v1alpha1.DefaultAddonTimeout) * time.Second}
		if ph.Timeout != nil && ph.Timeout.Duration > 0 {
			pp.timeout = ph.Timeout.Duration
		}
		for _, m := range ph.Manifests {
			item, err := prepareManifest(ctx, m, r, src)
			if err != nil {
				return nil, &PhaseError{Phase: ph.Name, Item: item.source, Reason: err.Error(), Err: err}
			}
			pp.manifests = append(pp.manifests, item)
		}
		releases := map[string]bool{}
		for _, c := range ph.Charts {
			fail := func(err error) error {
				return &PhaseError{Phase: ph.Name, Item: "chart " + c.Name, Reason: err.Error(), Err: err}
			}
			ns := c.Namespace
			if ns == "" {
				ns = "default"
			}
			if releases[ns+"/"+c.Name] {
				return nil, fail(errors.New("is named twice"))
			}
			releases[ns+"/"+c.Name] = true
			item := chartItem{release: c.Name, namespace: ns, createNamespace: c.CreateNamespace}
			vals, err := src.values(ctx, c)
			if err != nil {
				return nil, fail(err)
			}
			v, err := r.renderValues("values", map[string]any(vals))
			if err != nil {
				return nil, fail(err)
			}
			item.values = v.(map[string]any)
			switch {
			case !chartIsRemote(c):
				item.chart, err = src.localChart(c)
			case fetchRemote:
				if fetcher == nil {
					if fetcher, err = newRemoteCharts(src); err != nil {
						return nil, fail(err)
					}
				}
				item.chart, err = fetcher.load(c)
			}
			if err != nil {
				return nil, fail(err)
			}
			pp.charts = append(pp.charts, item)
		}
		plan.phases = append(plan.phases, pp)
	}
	return plan, nil
}

func prepareManifest(ctx context.Context, m v1alpha1.ManifestSource, r renderer, src Sources) (manifestItem, error) {
	name, docs, err := src.manifestDocuments(ctx, m)
	item := manifestItem{source: name}
	if err != nil {
		return item, err
	}
	for _, d := range docs {
		text, err := r.render(d.name, d.text)
		if err != nil {
			return item, err
		}
		objs, err := decodeObjects(document{name: d.name, text: text})
		if err != nil {
			return item, err
		}
		item.objects = append(item.objects, objs...)
	}
	return item, nil
}

// Apply installs the plan's phases in order against the cluster cfg points to, each phase's items
// in parallel, and waits for each phase to be ready within its timeout (default 10m) before the
// next starts. A second Apply of the same plan changes nothing: manifests are applied server-side
// (field manager "ephemera"); a chart is installed if absent, upgraded only if its version or values
// differ from the deployed release, skipped otherwise. A failed phase's error is a *PhaseError.
func Apply(ctx context.Context, cfg *rest.Config, plan *Plan, opts ApplyOptions) (Result, error) {
	var res Result
	c, err := newCluster(cfg)
	if err != nil {
		return res, err
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(PhaseEvent) {}
	}
	for _, ph := range plan.phases {
		start := time.Now()
		progress(PhaseEvent{Phase: ph.name, Kind: PhaseStarted})
		if err := c.applyPhase(ctx, ph); err != nil {
			progress(PhaseEvent{Phase: ph.name, Kind: PhaseFailed, Duration: time.Since(start), Err: err})
			return res, err
		}
		d := time.Since(start)
		progress(PhaseEvent{Phase: ph.name, Kind: PhaseReady, Duration: d})
		res.Phases = append(res.Phases, PhaseResult{Name: ph.name, Duration: d})
	}
	return res, nil
}

// applyPhase installs a phase's items in parallel, then polls until everything they installed is
// ready or the phase's timeout ends.
func (c *cluster) applyPhase(ctx context.Context, ph plannedPhase) error {
	pctx, cancel := context.WithTimeout(ctx, ph.timeout)
	defer cancel()
	fail := func(item string, err error) error {
		if ctx.Err() != nil { // interrupted, not timed out
			return &PhaseError{Phase: ph.name, Item: item, Reason: ctx.Err().Error(), Err: ctx.Err()}
		}
		return &PhaseError{Phase: ph.name, Item: item, Reason: err.Error(), Err: err}
	}

	var mu sync.Mutex
	var refs []objectRef
	g, gctx := errgroup.WithContext(pctx)
	for _, m := range ph.manifests {
		g.Go(func() error {
			r, err := c.applyManifests(gctx, m.objects)
			if err != nil {
				var ie *itemError
				if errors.As(err, &ie) {
					return fail(ie.item, ie.err)
				}
				return fail(m.source, err)
			}
			mu.Lock()
			refs = append(refs, r...)
			mu.Unlock()
			return nil
		})
	}
	for _, ch := range ph.charts {
		g.Go(func() error {
			r, _, err := installChart(gctx, c.cfg, ch)
			if err != nil {
				return fail("chart "+ch.release, err)
			}
			mu.Lock()
			refs = append(refs, r...)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	// The last answer of a poll that completed: one cut short by the
	// phase's deadline would report the deadline, not the pod's reason.
	var item, reason string
	for {
		qctx, cancel := context.WithTimeout(ctx, pollTimeout)
		it, why, err := c.notReady(qctx, refs)
		cancel()
		switch {
		case err == nil && it == "":
			return nil
		case err == nil:
			item, reason = it, why
		case reason == "":
			reason = err.Error()
		}
		select {
		case <-pctx.Done():
			if ctx.Err() != nil {
				return &PhaseError{Phase: ph.name, Item: item, Reason: ctx.Err().Error(), Err: ctx.Err()}
			}
			return &PhaseError{Phase: ph.name, Item: item, Reason: reason, Err: ErrNotReady}
		case <-time.After(retryInterval):
		}
	}
}

// pollTimeout bounds one readiness poll.
const pollTimeout = 10 * time.Second

// ErrNotReady is wrapped by the *PhaseError of a phase that was not ready within its timeout.
var ErrNotReady = errors.New("not ready within the phase's timeout")
