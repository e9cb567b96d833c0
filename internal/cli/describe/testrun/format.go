package testrun

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/cli/get/testruns"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

// keyWidth aligns the values of describe's "Key: value" lines.
const keyWidth = 16

// describer builds the text of describe.
type describer struct {
	b   strings.Builder
	now time.Time
}

// field writes "key:" and value, aligned; indent levels nest keys.
func (d *describer) field(indent int, key, value string) {
	k := strings.Repeat("  ", indent) + key + ":"
	if value == "" {
		d.b.WriteString(k + "\n")
		return
	}
	fmt.Fprintf(&d.b, "%-*s%s\n", keyWidth, k, value)
}

// table writes a titled table indented under its title, or "<none>".
func (d *describer) table(title string, header []string, rows [][]string) {
	if len(rows) == 0 {
		d.field(0, title, "<none>")
		return
	}
	d.field(0, title, "")
	header = append([]string{"  " + header[0]}, header[1:]...)
	for i, r := range rows {
		rows[i] = append([]string{"  " + r[0]}, r[1:]...)
	}
	_ = printer.Rows(&d.b, header, rows) // a strings.Builder does not fail
}

// time formats t in local time with how long ago, or from now, it is.
func (d *describer) time(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339) + " (" + printer.Relative(t.Time, d.now) + ")"
}

func (d *describer) testRun(tr *v1alpha1.TestRun) {
	st := &tr.Status
	d.field(0, "Name", tr.Name)
	d.field(0, "Namespace", tr.Namespace)
	d.field(0, "Phase", printer.OrDash(string(st.Phase)))
	if tr.Spec.Matrix != nil {
		d.field(0, "Matrix", matrix(tr.Spec))
	} else {
		d.field(0, "Cluster", clusterSource(tr.Spec.Cluster))
	}
	d.runner(tr.Spec)
	d.field(0, "Timeout", orDefault(tr.Spec.Timeout, v1alpha1.DefaultRunTimeout))
	d.field(0, "On failure", onFailure(tr.Spec))
	for _, r := range reports(tr) {
		d.field(0, "Report", r)
	}
	if tr.Spec.Matrix == nil {
		d.field(0, "TestCluster", printer.OrDash(st.TestCluster))
		d.field(0, "Kubernetes", printer.OrDash(st.KubernetesVersion))
		d.field(0, "Job", printer.OrDash(st.Job))
	}
	d.field(0, "Started", d.time(st.StartTime))
	d.field(0, "Completed", d.time(st.CompletionTime))
	dur := testruns.Duration(tr, d.now)
	if st.StartTime != nil && st.CompletionTime == nil && dur != "-" {
		dur += " so far"
	}
	d.field(0, "Duration", dur)
	if tr.Spec.Matrix == nil {
		exit := "-"
		if st.ExitCode != nil {
			exit = strconv.Itoa(int(*st.ExitCode))
		}
		d.field(0, "Exit code", exit)
	}
	d.results(st.Results)
	if tr.Spec.Matrix != nil {
		d.cells(st.Cells)
	}
	d.field(0, "Artifacts", printer.OrDash(st.Artifacts))
	if st.HeldUntil != nil {
		d.field(0, "Held until", d.time(st.HeldUntil))
	}
	d.field(0, "Reported", printer.OrDash(strings.Join(st.Reported, ", ")))
	d.conditions(st.Conditions)
}

func (d *describer) runner(spec v1alpha1.TestRunSpec) {
	r := spec.Runner
	d.field(0, "Runner", "")
	image := r.Image
	if r.ImagePullPolicy != "" {
		image += " (pull " + string(r.ImagePullPolicy) + ")"
	}
	d.field(1, "Image", image)
	d.field(1, "Command", printer.OrDash(shellJoin(r.Command)))
	if len(r.Args) > 0 {
		d.field(1, "Args", shellJoin(r.Args))
	}
	if len(r.Env) > 0 {
		names := make([]string, len(r.Env))
		for i, e := range r.Env {
			names[i] = e.Name
		}
		d.field(1, "Env", strings.Join(names, ", "))
	}
	d.field(1, "Artifacts", spec.ArtifactsDirOrDefault())
}

func (d *describer) results(r *v1alpha1.TestResults) {
	if r == nil {
		d.field(0, "Results", "-")
		return
	}
	d.field(0, "Results", fmt.Sprintf("%s, %s, %s, %d skipped",
		count(r.Tests, "test"), count(r.Failures, "failure"), count(r.Errors, "error"), r.Skipped))
	if len(r.Failed) == 0 {
		return
	}
	title := "Failed tests"
	if n := r.Failures + r.Errors; int(n) > len(r.Failed) {
		title = fmt.Sprintf("Failed tests (%d of %d)", len(r.Failed), n)
	}
	d.field(0, title, "")
	for _, name := range r.Failed {
		d.b.WriteString("  " + name + "\n")
	}
}

func (d *describer) cells(cells []v1alpha1.TestRunCell) {
	rows := make([][]string, 0, len(cells))
	for _, c := range cells {
		tests, failures := "-", "-"
		if r := c.Results; r != nil {
			tests, failures = strconv.Itoa(int(r.Tests)), strconv.Itoa(int(r.Failures+r.Errors))
		}
		rows = append(rows, []string{c.Name, printer.OrDash(c.Run), printer.OrDash(string(c.Phase)), tests, failures})
	}
	d.table("Cells", []string{"NAME", "RUN", "PHASE", "TESTS", "FAILURES"}, rows)
}

func (d *describer) conditions(conds []metav1.Condition) {
	rows := make([][]string, 0, len(conds))
	for _, c := range conds {
		rows = append(rows, []string{c.Type, string(c.Status), printer.OrDash(c.Reason), printer.OrDash(oneLine(c.Message))})
	}
	d.table("Conditions", []string{"TYPE", "STATUS", "REASON", "MESSAGE"}, rows)
}

// events writes the events oldest first, like kubectl describe.
func (d *describer) events(events []corev1.Event) {
	events = append([]corev1.Event(nil), events...)
	sort.SliceStable(events, func(i, j int) bool { return lastSeen(&events[i]).Before(lastSeen(&events[j])) })
	rows := make([][]string, 0, len(events))
	for i := range events {
		ev := &events[i]
		age := printer.Age(lastSeen(ev), d.now)
		if ev.Count > 1 {
			age = fmt.Sprintf("%s (x%d over %s)", age, ev.Count, printer.Age(firstSeen(ev), d.now))
		}
		from := ev.Source.Component
		if from == "" {
			from = ev.ReportingController
		}
		rows = append(rows, []string{ev.Type, ev.Reason, age, printer.OrDash(from), oneLine(ev.Message)})
	}
	d.table("Events", []string{"TYPE", "REASON", "AGE", "FROM", "MESSAGE"}, rows)
}

func lastSeen(ev *corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return firstSeen(ev)
}

func firstSeen(ev *corev1.Event) time.Time {
	switch {
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return ev.CreationTimestamp.Time
}

// clusterSource says where a run that is not a matrix gets its cluster.
func clusterSource(c v1alpha1.TestRunCluster) string {
	var s string
	switch {
	case c.PoolRef != "":
		s = "pool " + c.PoolRef
	case c.TemplateRef != "":
		s = "template " + c.TemplateRef
	case c.TestClusterRef != "":
		return "TestCluster " + c.TestClusterRef + " (given: the run neither deletes nor holds it)"
	default:
		return "-"
	}
	if c.KubernetesVersion != "" {
		s += ", Kubernetes " + c.KubernetesVersion
	}
	return s
}

// matrix says what cells a matrix run has: every template by every
// Kubernetes version.
func matrix(spec v1alpha1.TestRunSpec) string {
	templates := []string{spec.Cluster.TemplateRef}
	if len(spec.Matrix.Templates) > 0 {
		templates = spec.Matrix.Templates
	}
	versions := "the templates' versions"
	switch {
	case len(spec.Matrix.KubernetesVersions) > 0:
		versions = strings.Join(spec.Matrix.KubernetesVersions, ", ")
	case spec.Cluster.KubernetesVersion != "":
		versions = spec.Cluster.KubernetesVersion
	}
	n := testruns.CellCount(spec)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	return fmt.Sprintf("templates %s × Kubernetes %s (%d cell%s)", strings.Join(templates, ", "), versions, n, plural)
}

func onFailure(spec v1alpha1.TestRunSpec) string {
	switch spec.OnFailure {
	case v1alpha1.FailureHold:
		return "Hold the cluster for " + orDefault(spec.HoldFor, v1alpha1.DefaultHoldFor)
	case "":
		return "Delete the cluster (default)"
	}
	return string(spec.OnFailure) + " the cluster"
}

// reports names the commit statuses a run posts, like
// "github example/app@0123456 (ephemera/e2e)".
func reports(tr *v1alpha1.TestRun) []string {
	r := tr.Spec.Report
	if r == nil {
		return nil
	}
	var out []string
	for _, t := range []struct {
		forge  string
		target *v1alpha1.CommitStatusTarget
	}{{"github", r.GitHub}, {"gitlab", r.GitLab}} {
		if t.target == nil {
			continue
		}
		sha := t.target.SHA
		if len(sha) > 7 {
			sha = sha[:7]
		}
		name := t.target.Context
		if name == "" {
			name = "ephemera/" + tr.Name
		}
		out = append(out, fmt.Sprintf("%s %s@%s (%s)", t.forge, t.target.Repo, sha, name))
	}
	return out
}

func orDefault(d *metav1.Duration, def time.Duration) string {
	if d == nil {
		return def.String() + " (default)"
	}
	return d.Duration.String()
}

func count(n int32, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// shellJoin joins words as a shell would read them back.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
