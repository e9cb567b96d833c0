package report

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"regexp"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// gitlabState maps a State to GitLab's: pending, running, success, failed or
// canceled. GitLab has no error state, and "canceled" means that someone or
// something stopped the run, not that it broke, so StateError is reported as
// "failed" like StateFailure; the description tells the two apart.
var gitlabState = map[State]gitlab.BuildStateValue{
	StatePending: gitlab.Pending,
	StateRunning: gitlab.Running,
	StateSuccess: gitlab.Success,
	StateFailure: gitlab.Failed,
	StateError:   gitlab.Failed,
}

// gitlabSameStateRE matches GitLab's 400 for a status moved to the state it
// already has, e.g. "Cannot transition status via :run from :running", which
// GitLab answers to a repeated pending or running.
var gitlabSameStateRE = regexp.MustCompile(`Cannot transition status via :\w+ from :(\w+)`)

// newGitLab returns a sender that makes one POST /api/v4/projects/{id}/statuses/{sha}.
func newGitLab(t Target, token string, hc *http.Client) (sender, error) {
	opts := []gitlab.ClientOptionFunc{
		gitlab.WithHTTPClient(hc),
		gitlab.WithUserAgent(userAgent),
		// Retries are ours, with the injected clock.
		gitlab.WithoutRetries(),
		// Target.Validate has checked BaseURL; the client would log its own
		// doubts to the default logger.
		gitlab.WithURLWarningLogger(slog.New(slog.DiscardHandler)),
	}
	if t.BaseURL != "" {
		opts = append(opts, gitlab.WithBaseURL(t.BaseURL))
	}
	// Sends the token in the PRIVATE-TOKEN header.
	client, err := gitlab.NewClient(token, opts...)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, s Status) outcome {
		state := gitlabState[s.State]
		opt := &gitlab.SetCommitStatusOptions{
			State: state,
			Name:  gitlab.Ptr(t.Context),
		}
		if s.Description != "" {
			opt.Description = gitlab.Ptr(truncate(s.Description, GitLabMaxDescription))
		}
		if s.TargetURL != "" {
			opt.TargetURL = gitlab.Ptr(s.TargetURL)
		}
		// t.Repo, path or numeric ID, is escaped into one path segment by the client.
		_, resp, err := client.Commits.SetCommitStatus(t.Repo, t.SHA, opt, gitlab.WithContext(ctx))
		var o outcome
		if resp != nil && resp.Response != nil {
			o.code, o.header = resp.StatusCode, resp.Header
		}
		if err == nil || o.code == 0 {
			o.err = err
			return o
		}
		if e, ok := errors.AsType[*gitlab.ErrorResponse](err); ok {
			o.message = gitlabMessage(e)
		}
		if m := gitlabSameStateRE.FindStringSubmatch(o.message); o.code == http.StatusBadRequest && m != nil && m[1] == string(state) {
			o.done = true
		}
		return o
	}, nil
}

// gitlabMessage is GitLab's message in e: the body's "message" (or "error")
// when it is a string, the body itself when it is not JSON, else the client's
// rendering of the body.
func gitlabMessage(e *gitlab.ErrorResponse) string {
	var body struct {
		Message any    `json:"message"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(e.Body, &body); err != nil && len(e.Body) > 0 {
		return string(e.Body) // not JSON: a proxy's HTML page, say
	}
	if m, ok := body.Message.(string); ok && m != "" {
		return m
	}
	if body.Error != "" {
		return body.Error
	}
	return e.Message
}
