package report

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// State is the state of a test run as reported on a commit.
type State string

// States a Report may set. GitHub has no "running" state: StateRunning is
// reported there as pending.
const (
	// StatePending: the run is queued. GitHub "pending", GitLab "pending".
	StatePending State = "pending"
	// StateRunning: the run has started. GitHub "pending", GitLab "running".
	StateRunning State = "running"
	// StateSuccess: the tests passed. GitHub "success", GitLab "success".
	StateSuccess State = "success"
	// StateFailure: the tests failed. GitHub "failure", GitLab "failed".
	StateFailure State = "failure"
	// StateError: the run could not be carried out (no cluster, a crashed
	// harness). GitHub "error", GitLab "failed".
	StateError State = "error"
)

// Description limits, in characters; longer ones are cut to fit, ending in "…".
const (
	// GitHubMaxDescription is the longest description GitHub accepts.
	GitHubMaxDescription = 140
	// GitLabMaxDescription is the longest description GitLab stores.
	GitLabMaxDescription = 255
)

// ErrInvalidStatus is wrapped by Report's error for a Status that cannot be
// sent (unknown state, bad target URL); nothing was sent.
var ErrInvalidStatus = errors.New("invalid status")

// Status is one report: the state and what a reader sees next to it.
type Status struct {
	// State is the run's state.
	State State
	// Description is a one-line summary, e.g. "12 passed, 1 failed"; cut to
	// the provider's limit.
	Description string
	// TargetURL, optional, is an absolute http(s) URL linked from the status.
	TargetURL string
}

// Reporter sets one commit status.
type Reporter interface {
	// Report sets the status to s, retrying transient failures as set in
	// Options. Repeating the same Status is harmless. Errors are *Error (or
	// wrap ErrInvalidStatus) and never contain the token.
	Report(ctx context.Context, s Status) error
}

// Options tunes a Reporter; the zero value is ready to use.
type Options struct {
	// HTTPClient sends the requests (a copy of it, which follows no
	// redirect); nil means a client with a 30s timeout.
	HTTPClient *http.Client
	// Retries is how many times a transient failure (network error, 5xx,
	// 429 or a rate limit) is retried: 0 means 4, a negative value none.
	Retries int
	// Backoff is the wait before the first retry, doubled before each next
	// one; 0 means 1s.
	Backoff time.Duration
	// MaxBackoff caps every wait, including one asked for by Retry-After;
	// 0 means 1 minute.
	MaxBackoff time.Duration
	// Sleep waits d or until ctx is done, returning ctx's error then; nil
	// means a timer. Tests inject a fake.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now tells the time, to read a Retry-After date; nil means time.Now.
	Now func() time.Time
}

const (
	defaultRetries    = 4
	defaultBackoff    = time.Second
	defaultMaxBackoff = time.Minute
	defaultTimeout    = 30 * time.Second
)

func (o Options) withDefaults() Options {
	switch {
	case o.Retries == 0:
		o.Retries = defaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = defaultBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = defaultMaxBackoff
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	hc := &http.Client{Timeout: defaultTimeout}
	if o.HTTPClient != nil {
		c := *o.HTTPClient
		hc = &c
	}
	// A status POST is never redirected by a real API, and a redirect could
	// take the token (GitLab's PRIVATE-TOKEN header, which net/http does not
	// drop across hosts) to another host: answer the 3xx instead.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.HTTPClient = hc
	return o
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// New returns a Reporter for t that authenticates with token (surrounding
// white space, such as a Secret file's final newline, is dropped). It refuses
// an invalid target (wrapping ErrInvalidTarget) or an empty token.
func New(t Target, token string, opts Options) (Reporter, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, fmt.Errorf("token for %s is empty: %s", t.Provider, tokenHint[t.Provider])
	}
	opts = opts.withDefaults()
	r := &reporter{target: t, token: token, opts: opts}
	var err error
	switch t.Provider {
	case ProviderGitHub:
		r.send, err = newGitHub(t, token, opts.HTTPClient)
	case ProviderGitLab:
		r.send, err = newGitLab(t, token, opts.HTTPClient)
	}
	if err != nil {
		return nil, fmt.Errorf("%s client: %s", t.Provider, r.redact(err.Error()))
	}
	return r, nil
}

var tokenHint = map[string]string{
	ProviderGitHub: `give a token that may write commit statuses (classic: "repo:status" scope; fine-grained: "Commit statuses" read and write)`,
	ProviderGitLab: `give an access token with the "api" scope and at least the Developer role`,
}

// outcome is what one attempt got back.
type outcome struct {
	// code is the HTTP status; 0 when no answer came.
	code int
	// header is the answer's header (nil when none came).
	header http.Header
	// message is the provider's error message, if any.
	message string
	// rateLimited is set for a refusal that the provider says is a rate
	// limit whatever its code (GitHub answers 403 to some).
	rateLimited bool
	// done is set when the provider's answer means the status already is
	// what was asked for.
	done bool
	// err is the transport error when no answer came.
	err error
}

// sender makes one attempt.
type sender func(ctx context.Context, s Status) outcome

// reporter retries one provider's sender.
type reporter struct {
	target Target
	token  string
	opts   Options
	send   sender
}

var _ Reporter = (*reporter)(nil)

// Report implements Reporter.
func (r *reporter) Report(ctx context.Context, s Status) error {
	if err := s.validate(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		o := r.send(ctx, s)
		if o.done || (o.code >= 200 && o.code < 300) {
			return nil
		}
		e := r.newError(o, attempt)
		if err := ctx.Err(); err != nil {
			e.cause = err
			return e
		}
		if !e.Retryable() || attempt > r.opts.Retries {
			return e
		}
		if err := r.opts.Sleep(ctx, r.wait(attempt, o.header)); err != nil {
			e.cause = err
			return e
		}
	}
}

// wait is how long to wait before retry number n (from 1): Retry-After when
// the answer has one, else Backoff doubled n-1 times; capped by MaxBackoff.
func (r *reporter) wait(n int, h http.Header) time.Duration {
	d, ok := retryAfter(h, r.opts.Now())
	if !ok {
		d = r.opts.Backoff
		for i := 1; i < n && d < r.opts.MaxBackoff; i++ {
			d *= 2
		}
	}
	return min(d, r.opts.MaxBackoff)
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil {
		// Clamped (to a day) so that a huge value cannot overflow; MaxBackoff
		// caps it further.
		return time.Duration(min(max(secs, 0), 24*60*60)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func (s Status) validate() error {
	switch s.State {
	case StatePending, StateRunning, StateSuccess, StateFailure, StateError:
	default:
		return fmt.Errorf("%w: state %q is not one of pending, running, success, failure, error", ErrInvalidStatus, s.State)
	}
	if s.TargetURL != "" {
		u, err := url.Parse(s.TargetURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%w: target URL %q is not an absolute http(s) URL", ErrInvalidStatus, s.TargetURL)
		}
	}
	return nil
}

// truncate cuts s to at most n characters, ending a cut one in "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := []rune(s)
	return string(runes[:n-1]) + "…"
}
