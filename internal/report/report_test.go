package report_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/internal/report"
)

const runURL = "https://ephemera.example.com/runs/e2e-42"

// asError returns err as a *report.Error or fails the test.
func asError(t *testing.T, err error) *report.Error {
	t.Helper()
	var e *report.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *report.Error", err, err)
	}
	return e
}

func TestGitHubPendingRunningSuccessInOrder(t *testing.T) {
	fake := newFakeGitHub(t)
	r, sleep := newReporter(t, fake.target(), report.Options{})
	ctx := context.Background()
	for _, s := range []report.Status{
		{State: report.StatePending, Description: "waiting for a cluster", TargetURL: runURL},
		{State: report.StateRunning, Description: "running on tc-abc12", TargetURL: runURL},
		{State: report.StateSuccess, Description: "42 passed", TargetURL: runURL},
	} {
		if err := r.Report(ctx, s); err != nil {
			t.Fatalf("Report(%v): %v", s.State, err)
		}
	}
	want := []githubStatus{
		{State: "pending", Description: "waiting for a cluster", TargetURL: runURL, Context: "ephemera/e2e"},
		{State: "pending", Description: "running on tc-abc12", TargetURL: runURL, Context: "ephemera/e2e"},
		{State: "success", Description: "42 passed", TargetURL: runURL, Context: "ephemera/e2e"},
	}
	if diff := cmp.Diff(want, fake.bodies); diff != "" {
		t.Errorf("statuses posted (-want +got):\n%s", diff)
	}
	if got := fake.attempts(); got != 3 {
		t.Errorf("attempts = %d, want 3", got)
	}
	if w := sleep.got(); len(w) != 0 {
		t.Errorf("waited %v, want no wait", w)
	}
}

func TestGitLabPendingRunningSuccessInOrder(t *testing.T) {
	fake := newFakeGitLab(t, "platform/ci/demo.app")
	r, _ := newReporter(t, fake.target(), report.Options{})
	ctx := context.Background()
	for _, s := range []report.Status{
		{State: report.StatePending, Description: "waiting for a cluster"},
		{State: report.StateRunning, Description: "running on tc-abc12", TargetURL: runURL},
		{State: report.StateSuccess, Description: "42 passed", TargetURL: runURL},
	} {
		if err := r.Report(ctx, s); err != nil {
			t.Fatalf("Report(%v): %v", s.State, err)
		}
	}
	want := []gitlabStatus{
		{State: "pending", Name: "ephemera/e2e", Description: "waiting for a cluster"},
		{State: "running", Name: "ephemera/e2e", Description: "running on tc-abc12", TargetURL: runURL},
		{State: "success", Name: "ephemera/e2e", Description: "42 passed", TargetURL: runURL},
	}
	if diff := cmp.Diff(want, fake.bodies); diff != "" {
		t.Errorf("statuses posted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"pending", "running", "success"}, fake.states()); diff != "" {
		t.Errorf("states accepted (-want +got):\n%s", diff)
	}
}

func TestGitLabNumericProjectID(t *testing.T) {
	fake := newFakeGitLab(t, "4711")
	r, _ := newReporter(t, fake.target(), report.Options{})
	if err := r.Report(context.Background(), report.Status{State: report.StateSuccess}); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if diff := cmp.Diff([]string{"success"}, fake.states()); diff != "" {
		t.Errorf("states accepted (-want +got):\n%s", diff)
	}
}

func TestFailureAndErrorMapping(t *testing.T) {
	tests := []struct {
		provider string
		state    report.State
		want     string
	}{
		{report.ProviderGitHub, report.StateFailure, "failure"},
		{report.ProviderGitHub, report.StateError, "error"},
		{report.ProviderGitHub, report.StateRunning, "pending"},
		{report.ProviderGitLab, report.StateFailure, "failed"},
		// GitLab has no error state; "canceled" would misreport it.
		{report.ProviderGitLab, report.StateError, "failed"},
		{report.ProviderGitLab, report.StateRunning, "running"},
	}
	for _, tt := range tests {
		t.Run(tt.provider+"/"+string(tt.state), func(t *testing.T) {
			fake := newFake(t, tt.provider)
			r, _ := newReporter(t, fake.target(), report.Options{})
			if err := r.Report(context.Background(), report.Status{State: tt.state, Description: "x"}); err != nil {
				t.Fatalf("Report: %v", err)
			}
			if diff := cmp.Diff([]string{tt.want}, fake.states()); diff != "" {
				t.Errorf("states accepted (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetryAfter502ThenSuccess(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			fake := newFake(t, p)
			fake.queue(fakeResponse{code: http.StatusBadGateway, header: map[string]string{"Content-Type": "text/html"}, body: "<html>502 Bad Gateway</html>"})
			r, sleep := newReporter(t, fake.target(), report.Options{})
			if err := r.Report(context.Background(), report.Status{State: report.StateSuccess, Description: "42 passed"}); err != nil {
				t.Fatalf("Report: %v", err)
			}
			if got := fake.attempts(); got != 2 {
				t.Errorf("attempts = %d, want 2", got)
			}
			if diff := cmp.Diff([]time.Duration{time.Second}, sleep.got()); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
			if len(fake.states()) != 1 {
				t.Errorf("states accepted = %q, want one", fake.states())
			}
		})
	}
}

func TestRetriesExhaustedWithExponentialBackoff(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			fake := newFake(t, p)
			for range 10 {
				fake.queue(fakeResponse{code: http.StatusServiceUnavailable, body: `{"message":"maintenance"}`})
			}
			r, sleep := newReporter(t, fake.target(), report.Options{})
			err := r.Report(context.Background(), report.Status{State: report.StatePending})
			e := asError(t, err)
			if e.StatusCode != http.StatusServiceUnavailable || e.Attempts != 5 || !e.Retryable() {
				t.Errorf("error = %+v, want StatusCode 503, Attempts 5, Retryable", e)
			}
			for _, w := range []string{"HTTP 503", "maintenance", "(5 attempts)", "a later Report may succeed"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if got := fake.attempts(); got != 5 {
				t.Errorf("attempts = %d, want 5 (1 + 4 retries)", got)
			}
			want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
			if diff := cmp.Diff(want, sleep.got()); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackoffOptions(t *testing.T) {
	fake := newFakeGitHub(t)
	for range 10 {
		fake.queue(fakeResponse{code: http.StatusInternalServerError})
	}
	r, sleep := newReporter(t, fake.target(), report.Options{Retries: 3, Backoff: 10 * time.Second, MaxBackoff: 25 * time.Second})
	if err := r.Report(context.Background(), report.Status{State: report.StatePending}); err == nil {
		t.Fatal("Report = nil, want an error")
	}
	if diff := cmp.Diff([]time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second}, sleep.got()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}

	fake = newFakeGitHub(t)
	fake.queue(fakeResponse{code: http.StatusInternalServerError})
	r, sleep = newReporter(t, fake.target(), report.Options{Retries: -1})
	if err := r.Report(context.Background(), report.Status{State: report.StatePending}); err == nil {
		t.Fatal("Report with Retries -1 = nil, want an error")
	}
	if got := fake.attempts(); got != 1 || len(sleep.got()) != 0 {
		t.Errorf("with Retries -1: attempts = %d, waits %v; want 1 and none", got, sleep.got())
	}
}

func Test429HonoursRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		retryAfter string
		want       time.Duration
	}{
		{"seconds", "7", 7 * time.Second},
		{"date", now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{"capped", "3600", time.Minute},
		{"zero", "0", 0},
		{"unreadable falls back to backoff", "soon", time.Second},
	}
	for _, p := range providers {
		for _, tt := range tests {
			t.Run(p+"/"+tt.name, func(t *testing.T) {
				fake := newFake(t, p)
				fake.queue(fakeResponse{code: http.StatusTooManyRequests, header: map[string]string{"Retry-After": tt.retryAfter}, body: `{"message":"slow down"}`})
				r, sleep := newReporter(t, fake.target(), report.Options{Now: func() time.Time { return now }})
				if err := r.Report(context.Background(), report.Status{State: report.StatePending}); err != nil {
					t.Fatalf("Report: %v", err)
				}
				if got := fake.attempts(); got != 2 {
					t.Errorf("attempts = %d, want 2", got)
				}
				if diff := cmp.Diff([]time.Duration{tt.want}, sleep.got()); diff != "" {
					t.Errorf("waits (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestGitHubRateLimit403IsRetried(t *testing.T) {
	// GitHub answers 403, not 429, to some rate limits; it marks them with
	// X-RateLimit-Remaining: 0 or Retry-After.
	fake := newFakeGitHub(t)
	fake.queue(fakeResponse{
		code:   http.StatusForbidden,
		header: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "5000", "X-RateLimit-Reset": "1"},
		body:   `{"message":"API rate limit exceeded"}`,
	})
	r, sleep := newReporter(t, fake.target(), report.Options{})
	if err := r.Report(context.Background(), report.Status{State: report.StatePending}); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if got := fake.attempts(); got != 2 {
		t.Errorf("attempts = %d, want 2", got)
	}
	if diff := cmp.Diff([]time.Duration{time.Second}, sleep.got()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	tests := []struct {
		provider string
		answer   fakeResponse
		// want are phrases the error must hold.
		want []string
	}{
		{report.ProviderGitHub, fakeResponse{code: 401, body: `{"message":"Bad credentials"}`},
			[]string{"HTTP 401 Unauthorized: Bad credentials", "token was refused", "expired"}},
		{report.ProviderGitHub, fakeResponse{code: 403, body: `{"message":"Resource not accessible by personal access token"}`},
			[]string{"HTTP 403", "Resource not accessible", `"repo:status" scope`, `"Commit statuses"`}},
		{report.ProviderGitHub, fakeResponse{code: 404, body: `{"message":"Not Found"}`},
			[]string{"HTTP 404", `repository "ephemera-dev/demo.app" exists`, "/api/v3/"}},
		{report.ProviderGitHub, fakeResponse{code: 422, body: `{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","field":"sha","message":"No commit found for SHA: ` + testSHA + `"}]}`},
			[]string{"HTTP 422", "Validation Failed (No commit found for SHA: " + testSHA + ")", "commit 0123456789ab is pushed"}},
		{report.ProviderGitLab, fakeResponse{code: 401, body: `{"message":"401 Unauthorized"}`},
			[]string{"HTTP 401", "token was refused", "access token"}},
		{report.ProviderGitLab, fakeResponse{code: 403, body: `{"message":"403 Forbidden"}`},
			[]string{"HTTP 403", `"api" scope`, "Developer role"}},
		{report.ProviderGitLab, fakeResponse{code: 404, body: `{"message":"404 Project Not Found"}`},
			[]string{"HTTP 404", `project "platform/ci/demo.app" exists`, "commit 0123456789ab"}},
		{report.ProviderGitLab, fakeResponse{code: 400, body: `{"message":"Cannot transition status via :enqueue from :running (Reason(s): Status cannot transition via \"enqueue\")"}`},
			[]string{"HTTP 400", "from :running", "running back to pending"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.provider, tt.answer.code), func(t *testing.T) {
			fake := newFake(t, tt.provider)
			fake.queue(tt.answer)
			r, sleep := newReporter(t, fake.target(), report.Options{})
			err := r.Report(context.Background(), report.Status{State: report.StatePending})
			e := asError(t, err)
			if e.StatusCode != tt.answer.code || e.Retryable() || e.Attempts != 1 {
				t.Errorf("error = %+v, want StatusCode %d, not Retryable, 1 attempt", e, tt.answer.code)
			}
			if got := fake.attempts(); got != 1 {
				t.Errorf("attempts = %d, want 1 (no retry)", got)
			}
			if w := sleep.got(); len(w) != 0 {
				t.Errorf("waited %v, want no wait", w)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestGitLabRepeatedStateIsNotAnError(t *testing.T) {
	// GitLab refuses pending→pending and running→running with a 400; the
	// status already is what was asked for, so Report succeeds.
	fake := newFakeGitLab(t, "platform/ci/demo.app")
	r, sleep := newReporter(t, fake.target(), report.Options{})
	for _, st := range []report.State{report.StatePending, report.StatePending, report.StateRunning, report.StateRunning, report.StateSuccess} {
		if err := r.Report(context.Background(), report.Status{State: st}); err != nil {
			t.Fatalf("Report(%s): %v", st, err)
		}
	}
	if got := fake.attempts(); got != 5 {
		t.Errorf("attempts = %d, want 5", got)
	}
	if diff := cmp.Diff([]string{"pending", "running", "success"}, fake.states()); diff != "" {
		t.Errorf("states accepted (-want +got):\n%s", diff)
	}
	if w := sleep.got(); len(w) != 0 {
		t.Errorf("waited %v, want no wait", w)
	}
}

func TestNetworkErrorIsRetried(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			// A server that is gone: connections are refused.
			srv := httptest.NewServer(http.NotFoundHandler())
			srv.Close()
			target := newFake(t, p).target()
			target.BaseURL = srv.URL
			r, sleep := newReporter(t, target, report.Options{Retries: 2})
			err := r.Report(context.Background(), report.Status{State: report.StatePending})
			e := asError(t, err)
			if e.StatusCode != 0 || !e.Retryable() || e.Attempts != 3 {
				t.Errorf("error = %+v, want StatusCode 0, Retryable, 3 attempts", e)
			}
			if !strings.Contains(err.Error(), "could not be reached") {
				t.Errorf("error %q does not say the provider could not be reached", err)
			}
			if strings.Contains(err.Error(), srv.URL) {
				t.Errorf("error %q holds the request URL", err)
			}
			if got := len(sleep.got()); got != 2 {
				t.Errorf("waits = %d, want 2", got)
			}
		})
	}
}

func TestContextCanceledDuringBackoff(t *testing.T) {
	fake := newFakeGitLab(t, "platform/ci/demo.app")
	fake.queue(fakeResponse{code: http.StatusBadGateway}, fakeResponse{code: http.StatusBadGateway})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sleep := func(ctx context.Context, _ time.Duration) error {
		cancel()
		return ctx.Err()
	}
	r, _ := newReporter(t, fake.target(), report.Options{Sleep: sleep})
	err := r.Report(ctx, report.Status{State: report.StatePending})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Report = %v, want it to wrap context.Canceled", err)
	}
	if got := fake.attempts(); got != 1 {
		t.Errorf("attempts = %d, want 1", got)
	}
}

func TestDescriptionTruncated(t *testing.T) {
	long := strings.Repeat("é", 300)
	tests := []struct {
		provider string
		limit    int
	}{
		{report.ProviderGitHub, report.GitHubMaxDescription},
		{report.ProviderGitLab, report.GitLabMaxDescription},
	}
	for _, tt := range tests {
		t.Run(tt.provider, func(t *testing.T) {
			fake := newFake(t, tt.provider)
			r, _ := newReporter(t, fake.target(), report.Options{})
			if err := r.Report(context.Background(), report.Status{State: report.StateFailure, Description: long}); err != nil {
				t.Fatalf("Report: %v", err)
			}
			if err := r.Report(context.Background(), report.Status{State: report.StateSuccess, Description: long[:2*tt.limit]}); err != nil {
				t.Fatalf("Report: %v", err)
			}
			var got []string
			switch f := fake.(type) {
			case *fakeGitHub:
				for _, b := range f.bodies {
					got = append(got, b.Description)
				}
			case *fakeGitLab:
				for _, b := range f.bodies {
					got = append(got, b.Description)
				}
			}
			want := []string{strings.Repeat("é", tt.limit-1) + "…", strings.Repeat("é", tt.limit)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("descriptions (-want +got):\n%s", diff)
			}
			if n := utf8.RuneCountInString(got[0]); n != tt.limit {
				t.Errorf("cut description is %d characters, want %d", n, tt.limit)
			}
		})
	}
}

func TestInvalidStatusIsNotSent(t *testing.T) {
	for _, s := range []report.Status{
		{State: "done"},
		{State: ""},
		{State: report.StateSuccess, TargetURL: "runs/42"},
		{State: report.StateSuccess, TargetURL: "ftp://example.com/runs/42"},
	} {
		t.Run(fmt.Sprintf("%q %q", s.State, s.TargetURL), func(t *testing.T) {
			fake := newFakeGitHub(t)
			r, _ := newReporter(t, fake.target(), report.Options{})
			if err := r.Report(context.Background(), s); !errors.Is(err, report.ErrInvalidStatus) {
				t.Errorf("Report = %v, want ErrInvalidStatus", err)
			}
			if got := fake.attempts(); got != 0 {
				t.Errorf("attempts = %d, want 0", got)
			}
		})
	}
}
