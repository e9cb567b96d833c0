package testcluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/controller/provision"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
)

// addonsCondition derives the AddonsReady condition from what the
// provisioner knows of a cluster; ok is false when it says nothing new (a
// cluster Lost or being deleted keeps the condition it had, and one that
// failed before its addons were reached gets none).
func addonsCondition(st provision.Status) (status metav1.ConditionStatus, reason, msg string, ok bool) {
	a := st.Addons
	installed := st.Labels[provision.LabelAddons] == provision.AddonsReady
	switch st.State {
	case provision.Ready:
		switch {
		case len(a.Ready) > 0:
			return metav1.ConditionTrue, v1alpha1.ReasonAddonsInstalled, fmt.Sprintf("%s ready: %s", phases(len(a.Ready)), lifecycle.Durations(addons.Result{Phases: a.Ready})), true
		case installed:
			// Adopted after a restart: installed by an earlier server.
			return metav1.ConditionTrue, v1alpha1.ReasonAddonsInstalled, "every phase is installed and ready", true
		}
		return metav1.ConditionTrue, v1alpha1.ReasonNoAddons, "the template has no addons", true
	case provision.Creating:
		switch {
		case a.Current != "":
			msg := fmt.Sprintf("installing phase %s", a.Current)
			if i := slices.Index(a.Phases, a.Current); i >= 0 {
				msg += fmt.Sprintf(" (%d of %d)", i+1, len(a.Phases))
			}
			if len(a.Ready) > 0 {
				msg += "; ready: " + lifecycle.Durations(addons.Result{Phases: a.Ready})
			}
			return metav1.ConditionFalse, v1alpha1.ReasonAddonsInstalling, msg, true
		case len(a.Phases) > 0 && len(a.Ready) == len(a.Phases):
			return metav1.ConditionTrue, v1alpha1.ReasonAddonsInstalled, fmt.Sprintf("%s ready: %s", phases(len(a.Ready)), lifecycle.Durations(addons.Result{Phases: a.Ready})), true
		case len(a.Phases) > 0:
			return metav1.ConditionFalse, v1alpha1.ReasonAddonsPending, "installed once the cluster is ready: " + strings.Join(a.Phases, ", "), true
		case installed:
			return metav1.ConditionTrue, v1alpha1.ReasonAddonsInstalled, "every phase is installed and ready", true
		case st.Labels[provision.LabelAddons] == provision.AddonsPending:
			return metav1.ConditionFalse, v1alpha1.ReasonAddonsPending, "the addons are not installed yet", true
		}
		return metav1.ConditionTrue, v1alpha1.ReasonNoAddons, "the template has no addons", true
	case provision.Failed:
		var pe *addons.PhaseError
		switch {
		case errors.As(a.Err, &pe):
			return metav1.ConditionFalse, v1alpha1.ReasonAddonsFailed, pe.Error(), true
		case a.Err != nil:
			return metav1.ConditionFalse, v1alpha1.ReasonAddonsFailed, a.Err.Error(), true
		}
	}
	return "", "", "", false
}

func phases(n int) string {
	if n == 1 {
		return "1 phase"
	}
	return fmt.Sprintf("%d phases", n)
}

// building says what a TestCluster whose cluster is Creating waits for.
func building(st provision.Status) string {
	msg := fmt.Sprintf("building cluster %q", st.Name)
	if a := st.Addons; a.Current != "" {
		msg += ": installing addons, phase " + a.Current
		if i := slices.Index(a.Phases, a.Current); i >= 0 {
			msg += fmt.Sprintf(" (%d of %d)", i+1, len(a.Phases))
		}
	}
	return msg
}
