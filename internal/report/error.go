package report

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// maxMessage bounds how much of a provider's message an error carries (a 502
// from a proxy may answer with a whole HTML page).
const maxMessage = 300

// redacted stands in for the token wherever it would have appeared.
const redacted = "[REDACTED]"

// Error is a Report that did not go through. Its text says what was refused,
// the provider's message and what to check; it never holds the token.
type Error struct {
	// Provider is "github" or "gitlab".
	Provider string
	// Repo, SHA and Context are the target's.
	Repo, SHA, Context string
	// StatusCode is the HTTP status of the last answer; 0 when none came
	// (a network error, or ctx was done).
	StatusCode int
	// Message is the provider's message, cut short and without the token.
	Message string
	// Hint says what to check.
	Hint string
	// Attempts is how many requests were made.
	Attempts int

	rateLimited bool
	// cause is ctx's error, or the transport error, stripped of URLs and the
	// token.
	cause error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "set %s commit status %q on %s@%s", e.Provider, e.Context, e.Repo, shortSHA(e.SHA))
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (%d attempts)", e.Attempts)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, ": %s", e.Hint)
	}
	if e.cause != nil {
		fmt.Fprintf(&b, ": %v", e.cause)
	}
	return b.String()
}

// Unwrap returns the cause: ctx's error (so errors.Is(err, context.Canceled)
// works), a transport error's text, or nil.
func (e *Error) Unwrap() error { return e.cause }

// Retryable says whether a later Report may succeed unchanged: the provider
// was unreachable, failed (5xx) or rate-limited. Other refusals need a fix
// first (token, scope, repository, commit).
func (e *Error) Retryable() bool {
	return e.StatusCode == 0 || e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.rateLimited
}

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// newError describes a failed attempt.
func (r *reporter) newError(o outcome, attempts int) *Error {
	t := r.target
	e := &Error{
		Provider:    t.Provider,
		Repo:        t.Repo,
		SHA:         t.SHA,
		Context:     t.Context,
		StatusCode:  o.code,
		Message:     cut(r.redact(o.message), maxMessage),
		Attempts:    attempts,
		rateLimited: o.rateLimited,
	}
	if o.err != nil {
		e.cause = errors.New(r.redact(transportText(o.err)))
	}
	e.Hint = r.hint(e, o.header)
	return e
}

// transportText is the text of a transport error without the request URL
// (the base URL may be private, and a URL is no place for a secret anyway).
func transportText(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

// redact removes the token from s.
func (r *reporter) redact(s string) string {
	if r.token == "" {
		return s
	}
	return strings.ReplaceAll(s, r.token, redacted)
}

// cut shortens s to n bytes at most, on a rune boundary, collapsing white
// space so a multi-line body stays on one line.
func cut(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !isRuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// hint says what to check for e, whose answer had header h.
func (r *reporter) hint(e *Error, h http.Header) string {
	t := r.target
	switch {
	case e.StatusCode == 0:
		return "the provider could not be reached: check the network and BaseURL"
	case e.Retryable():
		return "the provider failed or is rate-limiting; a later Report may succeed"
	case e.StatusCode >= 300 && e.StatusCode < 400:
		where := ""
		if loc, err := url.Parse(h.Get("Location")); err == nil && loc.Host != "" {
			where = " to host " + loc.Host
		}
		return fmt.Sprintf("the API redirected%s; redirects are not followed, so that the token goes nowhere else: set BaseURL to the API's own URL", where)
	}
	github := t.Provider == ProviderGitHub
	switch e.StatusCode {
	case http.StatusUnauthorized:
		if github {
			return "the token was refused: check that it is valid and has not expired or been revoked"
		}
		return "the token was refused: check that it is a valid personal, project or group access token and has not expired or been revoked"
	case http.StatusForbidden:
		if github {
			return fmt.Sprintf(`the token may not write statuses to %q: a classic token needs the "repo:status" scope, a fine-grained token or GitHub App "Commit statuses" read and write on the repository`, t.Repo)
		}
		return fmt.Sprintf(`the token may not write statuses to %q: it needs the "api" scope and at least the Developer role in the project`, t.Repo)
	case http.StatusNotFound:
		if github {
			return fmt.Sprintf("check that repository %q exists and the token can read it (GitHub answers 404 when it cannot), and that BaseURL is your GitHub Enterprise API URL (https://HOST/api/v3/)", t.Repo)
		}
		return fmt.Sprintf("check that project %q exists and the token can read it (GitLab answers 404 when it cannot), that commit %s is pushed to it, and that BaseURL is your GitLab URL", t.Repo, shortSHA(t.SHA))
	case http.StatusUnprocessableEntity:
		return fmt.Sprintf("check that commit %s is pushed to %q and that the target URL is valid", shortSHA(t.SHA), t.Repo)
	case http.StatusBadRequest:
		if !github {
			return "GitLab refuses some changes of state (such as running back to pending): report pending, then running, then the result"
		}
	}
	return ""
}
