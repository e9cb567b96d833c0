package addons

import "strings"

// PhaseError is the error of a failed phase: the phase, the item that failed (a chart release, a
// manifest source or an object such as "Deployment cert-manager/cert-manager") and why.
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

// Error reads like `phase operators: Deployment cert-manager/cert-manager not Available: pod
// cert-manager-x: ImagePullBackOff` (a reason that starts with "not " or "is " follows the item
// after a space, any other after a colon).
func (e *PhaseError) Error() string {
	s := "phase " + e.Phase
	if e.Item == "" {
		return s + " " + e.Reason
	}
	s += ": " + e.Item
	switch {
	case e.Reason == "":
		return s
	case strings.HasPrefix(e.Reason, "not ") || strings.HasPrefix(e.Reason, "is "):
		return s + " " + e.Reason
	default:
		return s + ": " + e.Reason
	}
}

// Unwrap returns the underlying error.
func (e *PhaseError) Unwrap() error { return e.Err }
