package admission

import (
	"errors"
	"fmt"
	"time"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/addons"
	"github.com/ephemera-dev/ephemera/internal/lifecycle"
)

// failureCondition is the reason and message of the Ready condition of a
// pool that backs off after a failed create: err is the last failure,
// failures how many failed in a row, retryIn how long until the next
// create. A failed addon phase names the phase, item and reason.
func failureCondition(err error, failures int, retryIn time.Duration) (reason, msg string) {
	inRow := ""
	if failures > 1 {
		inRow = fmt.Sprintf(" (%d times in a row)", failures)
	}
	retry := "another is built in " + retryIn.Round(time.Second).String()
	var pe *addons.PhaseError
	switch {
	case errors.As(err, &pe):
		return v1alpha1.ReasonAddonsFailed, fmt.Sprintf("the addons of a new cluster failed%s, so it was deleted; %s: %s", inRow, retry, pe.Error())
	case errors.Is(err, lifecycle.ErrAddons):
		return v1alpha1.ReasonAddonsFailed, fmt.Sprintf("the template's addons cannot be installed%s; %s: %v", inRow, retry, err)
	case err != nil:
		return v1alpha1.ReasonProvisionFailed, fmt.Sprintf("creating a cluster failed%s; %s: %v", inRow, retry, err)
	}
	return v1alpha1.ReasonProvisionFailed, fmt.Sprintf("creating a cluster failed%s; %s", inRow, retry)
}
