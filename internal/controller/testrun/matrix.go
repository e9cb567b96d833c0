package testrun

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/runner"
)

// MergedJUnit is the file, in a matrix run's artefacts, with every cell's
// JUnit.
const MergedJUnit = "junit.xml"

// Cell is one cell of a matrix.
type Cell struct {
	Template, KubernetesVersion string
}

// Name is how the cell is shown: template/version, or the one that varies.
func (c Cell) Name() string {
	switch {
	case c.Template == "":
		return c.KubernetesVersion
	case c.KubernetesVersion == "":
		return c.Template
	}
	return c.Template + "/" + c.KubernetesVersion
}

// Cells lists a matrix run's cells, templates outermost. A dimension the
// matrix leaves out has the single value of spec.cluster.
func Cells(spec v1alpha1.TestRunSpec) []Cell {
	templates := spec.Matrix.Templates
	if len(templates) == 0 {
		templates = []string{spec.Cluster.TemplateRef}
	}
	versions := spec.Matrix.KubernetesVersions
	if len(versions) == 0 {
		versions = []string{spec.Cluster.KubernetesVersion}
	}
	var cells []Cell
	for _, t := range templates {
		for _, v := range versions {
			c := Cell{KubernetesVersion: v}
			if len(spec.Matrix.Templates) > 0 {
				c.Template = t
			}
			cells = append(cells, c)
		}
	}
	return cells
}

// childName is the i-th cell's TestRun.
func childName(run *v1alpha1.TestRun, i int) string { return fmt.Sprintf("%s-%d", run.Name, i+1) }

// reconcileMatrix makes a child run per cell and sums them up.
func (r *Reconciler) reconcileMatrix(ctx context.Context, run *v1alpha1.TestRun) (reconcile.Result, error) {
	if complete := meta.FindStatusCondition(run.Status.Conditions, v1alpha1.ConditionComplete); complete != nil && complete.Status == metav1.ConditionTrue {
		return reconcile.Result{}, nil
	}
	cells := Cells(run.Spec)
	status := make([]v1alpha1.TestRunCell, len(cells))
	children := make([]*v1alpha1.TestRun, len(cells))
	for i, cell := range cells {
		child, problem, err := r.ensureChild(ctx, run, i, cell)
		if err != nil {
			return reconcile.Result{}, err
		}
		if problem != "" {
			return reconcile.Result{}, r.abandonMatrix(ctx, run, problem)
		}
		children[i] = child
		status[i] = v1alpha1.TestRunCell{
			Name: cell.Name(), Run: child.Name, Template: cell.Template, KubernetesVersion: cell.KubernetesVersion,
			Phase: PhaseOf(child), Results: child.Status.Results,
		}
		if status[i].KubernetesVersion == "" {
			status[i].KubernetesVersion = child.Status.KubernetesVersion
		}
	}
	run.Status.Cells = status
	run.Status.Results = sumResults(status)
	if run.Status.StartTime == nil {
		now := metav1.NewTime(r.Now())
		run.Status.StartTime = &now
	}

	done, running := 0, 0
	var failed, errored []string
	for _, c := range status {
		switch c.Phase {
		case v1alpha1.TestRunSucceeded:
			done++
		case v1alpha1.TestRunFailed:
			done++
			failed = append(failed, c.Name)
		case v1alpha1.TestRunError:
			done++
			errored = append(errored, c.Name)
		case v1alpha1.TestRunRunning:
			running++
		}
	}
	if running > 0 {
		setCondition(run, v1alpha1.ConditionClusterReady, metav1.ConditionTrue, v1alpha1.ReasonReady, "the cells' clusters are ready or being made")
	}
	if done < len(cells) {
		reason := v1alpha1.ReasonWaiting
		if running > 0 {
			reason = v1alpha1.ReasonRunning
		}
		setCondition(run, v1alpha1.ConditionComplete, metav1.ConditionFalse, reason,
			fmt.Sprintf("%d of %d cells done, %d running", done, len(cells), running))
		return reconcile.Result{}, nil
	}
	msg := fmt.Sprintf("all %d cells passed", len(cells))
	reason := v1alpha1.ReasonPassed
	switch {
	case len(failed) > 0:
		reason = v1alpha1.ReasonTestsFailed
		msg = fmt.Sprintf("%d of %d cells failed: %s", len(failed), len(cells), strings.Join(failed, ", "))
		if len(errored) > 0 {
			msg += fmt.Sprintf("; %d could not run: %s", len(errored), strings.Join(errored, ", "))
		}
	case len(errored) > 0:
		reason = v1alpha1.ReasonRunnerError
		msg = fmt.Sprintf("%d of %d cells could not run: %s", len(errored), len(cells), strings.Join(errored, ", "))
	}
	if dir := r.artifactsDir(run); dir != "" {
		if tooLarge, err := r.mergeCells(run, dir, status); err != nil {
			msg += "; merging the cells' JUnit failed: " + err.Error()
		} else {
			run.Status.Artifacts = dir
			if note := runner.TooLargeNote(tooLarge); note != "" {
				msg += "; " + note + " (left out of " + MergedJUnit + ")"
			}
		}
	}
	now := metav1.NewTime(r.Now())
	run.Status.CompletionTime = &now
	setCondition(run, v1alpha1.ConditionComplete, metav1.ConditionTrue, reason, msg)
	log.FromContext(ctx).Info("Matrix TestRun finished", "testrun", klog.KObj(run), "reason", reason, "message", msg)
	return reconcile.Result{}, nil
}

// ensureChild returns cell i's run, creating it: the parent's spec for one
// cluster, without matrix or report. A cell that cannot be made (its name
// taken, its spec refused) comes back as problem, for the run to end with.
func (r *Reconciler) ensureChild(ctx context.Context, run *v1alpha1.TestRun, i int, cell Cell) (child *v1alpha1.TestRun, problem string, err error) {
	child = &v1alpha1.TestRun{}
	key := types.NamespacedName{Namespace: run.Namespace, Name: childName(run, i)}
	err = r.Client.Get(ctx, key, child)
	if err == nil {
		if !metav1.IsControlledBy(child, run) {
			return nil, fmt.Sprintf("a TestRun named %q exists already and is not a cell of %q: delete it, or rename the run", key.Name, run.Name), nil
		}
		return child, "", nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, "", err
	}
	spec := *run.Spec.DeepCopy()
	spec.Matrix, spec.Report = nil, nil
	if cell.Template != "" {
		spec.Cluster.TemplateRef = cell.Template
	}
	spec.Cluster.KubernetesVersion = cell.KubernetesVersion
	child = &v1alpha1.TestRun{
		ObjectMeta: metav1.ObjectMeta{
			Name: key.Name, Namespace: key.Namespace,
			Labels:      map[string]string{LabelParent: run.Name},
			Annotations: map[string]string{"ephemera.dev/cell": cell.Name()},
		},
		Spec: spec,
	}
	if err := controllerutil.SetControllerReference(run, child, r.Client.Scheme()); err != nil {
		return nil, "", err
	}
	err = r.Client.Create(ctx, child)
	switch {
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
		return nil, fmt.Sprintf("cell %s: its TestRun %q was refused: %v", cell.Name(), key.Name, err), nil
	case err != nil:
		return nil, "", fmt.Errorf("create cell %s (TestRun %q): %w", cell.Name(), key.Name, err)
	}
	return child, "", nil
}

// abandonMatrix ends a matrix run that cannot make its cells: it deletes
// the cells it made, so that none holds a cluster, and records why.
func (r *Reconciler) abandonMatrix(ctx context.Context, run *v1alpha1.TestRun, problem string) error {
	cells := &v1alpha1.TestRunList{}
	if err := r.Client.List(ctx, cells, client.InNamespace(run.Namespace), client.MatchingLabels{LabelParent: run.Name}); err != nil {
		return err
	}
	for i := range cells.Items {
		if c := &cells.Items[i]; metav1.IsControlledBy(c, run) && c.DeletionTimestamp.IsZero() {
			if err := r.Client.Delete(ctx, c); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	now := metav1.NewTime(r.Now())
	run.Status.CompletionTime = &now
	setCondition(run, v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonRunnerError, problem)
	log.FromContext(ctx).Info("Matrix TestRun cannot make its cells", "testrun", klog.KObj(run), "problem", problem)
	r.event(run, v1alpha1.ReasonRunnerError, "Finish", problem)
	return nil
}

// mergeCells writes the merged JUnit of every cell into dir, and returns
// the reports left out for their size.
func (r *Reconciler) mergeCells(run *v1alpha1.TestRun, dir string, cells []v1alpha1.TestRunCell) ([]string, error) {
	in := make([]runner.Cell, len(cells))
	for i, c := range cells {
		in[i] = runner.Cell{Name: c.Name, Dir: filepath.Join(r.ArtifactsRoot, run.Namespace, c.Run)}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Written as it is read: a new file, renamed into place when whole.
	f, err := os.CreateTemp(dir, "."+MergedJUnit+"-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	tooLarge, err := runner.MergeJUnit(f, in)
	if err != nil {
		f.Close()
		return tooLarge, err
	}
	if err := f.Close(); err != nil {
		return tooLarge, err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return tooLarge, err
	}
	return tooLarge, os.Rename(f.Name(), filepath.Join(dir, MergedJUnit))
}

// sumResults adds the cells' results up; failing tests are named by cell.
func sumResults(cells []v1alpha1.TestRunCell) *v1alpha1.TestResults {
	var sum *v1alpha1.TestResults
	for _, c := range cells {
		if c.Results == nil {
			continue
		}
		if sum == nil {
			sum = &v1alpha1.TestResults{}
		}
		sum.Tests += c.Results.Tests
		sum.Failures += c.Results.Failures
		sum.Errors += c.Results.Errors
		sum.Skipped += c.Results.Skipped
		for _, f := range c.Results.Failed {
			if len(sum.Failed) < maxFailedNames {
				sum.Failed = append(sum.Failed, c.Name+": "+f)
			}
		}
	}
	return sum
}
