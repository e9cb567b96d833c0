package addons

import "fmt"

// PhaseError is the error of a failed phase: the phase, the item that failed (a chart release,
// a manifest source or an object such as "Deployment cert-manager/cert-manager") and why.
type PhaseError struct {
	// Phase is the phase's name.
	Phase string
	// Item names what failed, e.g. "Deployment cert-manager/cert-manager" or "chart cert-manager".
	Item string
	// Reason says why, e.g. "not Available: pod cert-manager-x: ImagePullBackOff".
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error reads like `phase operators: Deployment cert-manager/cert-manager not Available: pod cert-manager-x: ImagePullBackOff`.
func (e *PhaseError) Error() string {
	s := "phase " + e.Phase + ":"
	if e.Item != "" {
		s += " " + e.Item
	}
	if e.Reason != "" {
		s += " " + e.Reason
	}
	return s
}

// Unwrap returns the underlying error.
func (e *PhaseError) Unwrap() error { return e.Err }

var _ = fmt.Sprintf
