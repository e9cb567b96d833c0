package testrun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/report"
)

// reportRetry is how soon a report that failed (after the reporter's own
// retries) is tried again.
const reportRetry = 30 * time.Second

// DefaultTokenKey is the Secret key of a forge token when none is named.
const DefaultTokenKey = "token"

// refusal is a forge's answer that retrying cannot change.
type refusal struct {
	state   report.State
	message string
}

// forge is one report target of a run.
type forge struct {
	provider string
	target   *v1alpha1.CommitStatusTarget
}

func forges(run *v1alpha1.TestRun) []forge {
	var out []forge
	if rep := run.Spec.Report; rep != nil {
		if rep.GitHub != nil {
			out = append(out, forge{report.ProviderGitHub, rep.GitHub})
		}
		if rep.GitLab != nil {
			out = append(out, forge{report.ProviderGitLab, rep.GitLab})
		}
	}
	return out
}

// reportStatus posts the run's state to each forge once per state change:
// pending while it waits, running, then success, failure or error.
// status.reported remembers what each forge was last told.
func (r *Reconciler) reportStatus(ctx context.Context, run *v1alpha1.TestRun) (reconcile.Result, error) {
	fs := forges(run)
	if len(fs) == 0 {
		return reconcile.Result{}, nil
	}
	state, desc := r.describe(run)
	var problems []string
	retry := false
	for _, f := range fs {
		entry := f.provider + "=" + string(state)
		key := string(run.UID) + "/" + f.provider
		if v, ok := r.refused.Load(key); ok && v.(refusal).state == state {
			// Refused in this state already: wait for the next one.
			problems = append(problems, v.(refusal).message)
			continue
		}
		if last, ok := r.posted.Load(key); ok && last == state || slices.Contains(run.Status.Reported, entry) {
			// Posted already (status.reported lags behind when the
			// cache does).
			if !slices.Contains(run.Status.Reported, entry) {
				run.Status.Reported = slices.DeleteFunc(run.Status.Reported, func(s string) bool { return strings.HasPrefix(s, f.provider+"=") })
				run.Status.Reported = append(run.Status.Reported, entry)
			}
			continue
		}
		if err := r.post(ctx, run, f, report.Status{State: state, Description: desc, TargetURL: r.targetURL(run, f.target)}); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f.provider, err))
			// A refusal (bad token, no such repo) waits for the run's
			// next state; the rest (network, a Secret not there yet)
			// is tried again.
			var forgeErr *report.Error
			if !errors.As(err, &forgeErr) || forgeErr.Retryable() {
				retry = true
			} else {
				r.refused.Store(key, refusal{state: state, message: problems[len(problems)-1]})
			}
			continue
		}
		r.posted.Store(key, state)
		log.FromContext(ctx).Info("Reported commit status", "testrun", klog.KObj(run), "forge", f.provider, "repo", f.target.Repo, "state", state)
		run.Status.Reported = slices.DeleteFunc(run.Status.Reported, func(s string) bool { return strings.HasPrefix(s, f.provider+"=") })
		run.Status.Reported = append(run.Status.Reported, entry)
	}
	if len(problems) > 0 {
		msg := strings.Join(problems, "; ")
		if !retry {
			setCondition(run, v1alpha1.ConditionReported, metav1.ConditionFalse, v1alpha1.ReasonReportFailed, msg+" (tried again at the run's next state)")
			return reconcile.Result{}, nil
		}
		setCondition(run, v1alpha1.ConditionReported, metav1.ConditionFalse, v1alpha1.ReasonReportFailed, msg+fmt.Sprintf(" (retrying in %s)", reportRetry))
		return reconcile.Result{RequeueAfter: reportRetry}, nil
	}
	setCondition(run, v1alpha1.ConditionReported, metav1.ConditionTrue, v1alpha1.ReasonReported,
		fmt.Sprintf("reported %s: %s", state, strings.Join(run.Status.Reported, ", ")))
	return reconcile.Result{}, nil
}

// post sends one status with the token from the run's Secret.
func (r *Reconciler) post(ctx context.Context, run *v1alpha1.TestRun, f forge, s report.Status) error {
	key := cmpOr(f.target.TokenSecretRef.Key, DefaultTokenKey)
	secret := &corev1.Secret{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: f.target.TokenSecretRef.Name}, secret); err != nil {
		return fmt.Errorf("read the token Secret %q: %w", f.target.TokenSecretRef.Name, err)
	}
	token, ok := secret.Data[key]
	if !ok {
		return fmt.Errorf("the token Secret %q has no key %q", f.target.TokenSecretRef.Name, key)
	}
	newReporter := r.NewReporter
	if newReporter == nil {
		newReporter = func(t report.Target, token string) (report.Reporter, error) {
			// Few, short retries: a worker waits on them, and the run is
			// requeued for more.
			return report.New(t, token, report.Options{Retries: 2, MaxBackoff: 5 * time.Second})
		}
	}
	rep, err := newReporter(report.Target{
		Provider: f.provider,
		Repo:     f.target.Repo,
		SHA:      f.target.SHA,
		Context:  cmpOr(f.target.Context, "ephemera/"+run.Name),
		BaseURL:  f.target.URL,
	}, string(token))
	if err != nil {
		return err
	}
	return rep.Report(ctx, s)
}

// describe maps the run to a commit state and a one-line description.
func (r *Reconciler) describe(run *v1alpha1.TestRun) (report.State, string) {
	phase := PhaseOf(run)
	results := ""
	if res := run.Status.Results; res != nil {
		results = fmt.Sprintf("%d tests, %d failed, %d errors, %d skipped", res.Tests, res.Failures, res.Errors, res.Skipped)
	}
	switch phase {
	case v1alpha1.TestRunSucceeded:
		return report.StateSuccess, cmpOr(results, "the tests passed")
	case v1alpha1.TestRunFailed:
		msg := conditionMessage(run, v1alpha1.ConditionComplete)
		if results != "" {
			msg = results
			if f := run.Status.Results.Failed; len(f) > 0 {
				msg += ": " + strings.Join(f, ", ")
			}
		}
		return report.StateFailure, msg
	case v1alpha1.TestRunError:
		return report.StateError, conditionMessage(run, v1alpha1.ConditionComplete)
	case v1alpha1.TestRunRunning:
		return report.StateRunning, "the tests are running"
	}
	return report.StatePending, "waiting for a cluster"
}

func (r *Reconciler) targetURL(run *v1alpha1.TestRun, t *v1alpha1.CommitStatusTarget) string {
	if t.TargetURL != "" {
		return t.TargetURL
	}
	if r.ExternalURL == "" || r.ArtifactsRoot == "" || r.Links == nil {
		return ""
	}
	return strings.TrimSuffix(r.ExternalURL, "/") + r.Links.RunPath(run.Namespace, run.Name, r.Now().Add(r.LinkTTL))
}

func conditionMessage(run *v1alpha1.TestRun, typ string) string {
	for _, c := range run.Status.Conditions {
		if c.Type == typ {
			return c.Message
		}
	}
	return ""
}
