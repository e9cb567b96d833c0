package report

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/google/go-github/v92/github"
)

// userAgent is sent to both providers.
const userAgent = "ephemera"

// githubState maps a State to GitHub's: pending, success, failure or error.
var githubState = map[State]string{
	StatePending: "pending",
	StateRunning: "pending", // GitHub has no running state.
	StateSuccess: "success",
	StateFailure: "failure",
	StateError:   "error",
}

// newGitHub returns a sender that makes one POST /repos/{owner}/{repo}/statuses/{sha}.
func newGitHub(t Target, token string, hc *http.Client) (sender, error) {
	opts := []github.ClientOptionsFunc{
		github.WithHTTPClient(hc),
		// Sent as "Authorization: Bearer <token>" by the client's transport.
		github.WithAuthToken(token),
		github.WithUserAgent(userAgent),
		// Retries are ours; the client's own refusal to send before a rate
		// limit resets would bypass the injected clock.
		github.WithDisableRateLimitCheck(),
	}
	if t.BaseURL != "" {
		opts = append(opts, github.WithEnterpriseURLs(t.BaseURL, t.BaseURL))
	}
	client, err := github.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	owner, name, _ := strings.Cut(t.Repo, "/")
	return func(ctx context.Context, s Status) outcome {
		status := github.RepoStatus{
			State:   new(githubState[s.State]),
			Context: new(t.Context),
		}
		if s.Description != "" {
			status.Description = new(truncate(s.Description, GitHubMaxDescription))
		}
		if s.TargetURL != "" {
			status.TargetURL = new(s.TargetURL)
		}
		_, resp, err := client.Repositories.CreateStatus(ctx, owner, name, t.SHA, status)
		var o outcome
		if resp != nil && resp.Response != nil {
			o.code, o.header = resp.StatusCode, resp.Header
		}
		if err == nil || o.code == 0 {
			o.err = err
			return o
		}
		o.message, o.rateLimited = githubMessage(err, o)
		return o
	}, nil
}

// githubMessage reads GitHub's message from err, and whether GitHub called it
// a rate limit: a 403 or 429 with X-RateLimit-Remaining: 0 or Retry-After.
func githubMessage(err error, o outcome) (string, bool) {
	limited := (o.code == http.StatusForbidden || o.code == http.StatusTooManyRequests) &&
		(o.header.Get("X-RateLimit-Remaining") == "0" || o.header.Get("Retry-After") != "")
	if e, ok := errors.AsType[*github.RateLimitError](err); ok {
		return e.Message, true
	}
	if e, ok := errors.AsType[*github.AbuseRateLimitError](err); ok {
		return e.Message, true
	}
	if e, ok := errors.AsType[*github.ErrorResponse](err); ok {
		msg := e.Message
		var details []string
		for _, d := range e.Errors {
			switch {
			case d.Message != "":
				details = append(details, d.Message)
			case d.Field != "":
				details = append(details, d.Field+" "+d.Code)
			}
		}
		if len(details) > 0 {
			msg += " (" + strings.Join(details, "; ") + ")"
		}
		return msg, limited
	}
	return "", limited
}
