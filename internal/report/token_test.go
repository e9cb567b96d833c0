package report_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ephemera-dev/ephemera/internal/report"
)

func TestTokenWithFinalNewlineIsTrimmed(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			fake := newFake(t, p)
			// As read from a mounted Secret file; the fakes check the exact token.
			r, err := report.New(fake.target(), testToken+"\n", report.Options{})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if err := r.Report(context.Background(), report.Status{State: report.StateSuccess}); err != nil {
				t.Fatalf("Report: %v", err)
			}
		})
	}
}

// TestTokenAbsentFromErrors makes the fakes echo the token back in every way
// an answer can carry it, and checks that no error text holds it.
func TestTokenAbsentFromErrors(t *testing.T) {
	answers := map[string]fakeResponse{
		"401 echoing the token":      {code: 401, body: `{"message":"Bad credentials: Bearer ` + testToken + `"}`},
		"403 echoing the token":      {code: 403, body: `{"message":"token ` + testToken + ` lacks scope"}`},
		"422 details with the token": {code: 422, body: `{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","message":"` + testToken + `"}]}`},
		"404":                        {code: 404, body: `{"message":"Not Found ` + testToken + `"}`},
		"502 html page with the token": {code: 502, header: map[string]string{"Content-Type": "text/html"},
			body: "<html><body>upstream said PRIVATE-TOKEN: " + testToken + "</body></html>"},
		"400 not json": {code: 400, header: map[string]string{"Content-Type": "text/plain"}, body: "bad request from " + testToken},
	}
	var msgs []string
	for _, p := range providers {
		for name, answer := range answers {
			fake := newFake(t, p)
			for range 5 {
				fake.queue(answer)
			}
			r, _ := newReporter(t, fake.target(), report.Options{})
			err := r.Report(context.Background(), report.Status{State: report.StateFailure})
			if err == nil {
				t.Errorf("%s/%s: Report = nil, want an error", p, name)
				continue
			}
			e := asError(t, err)
			msgs = append(msgs, p+"/"+name+": "+err.Error(), e.Message, e.Hint)
			// (GitLab's client keeps no message of a 404 but "Not Found".)
			if strings.HasPrefix(name, "401") && !strings.Contains(e.Message, "[REDACTED]") {
				t.Errorf("%s/%s: Message %q, want the token replaced by [REDACTED]", p, name, e.Message)
			}
		}

		// Unreachable, with the token in the URL's query and in its user info.
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		target := newFake(t, p).target()
		target.BaseURL = srv.URL + "/?private_token=" + testToken
		if _, err := report.New(target, testToken, report.Options{}); err == nil {
			t.Errorf("%s: New with a query in BaseURL = nil, want an error", p)
		} else {
			msgs = append(msgs, err.Error())
		}
		target.BaseURL = strings.Replace(srv.URL, "http://", "http://user:"+testToken+"@", 1)
		if _, err := report.New(target, testToken, report.Options{}); err == nil {
			t.Errorf("%s: New with credentials in BaseURL = nil, want an error", p)
		} else {
			msgs = append(msgs, err.Error())
		}
		target.BaseURL = srv.URL
		r, _ := newReporter(t, target, report.Options{})
		if err := r.Report(context.Background(), report.Status{State: report.StatePending}); err == nil {
			t.Errorf("%s: Report to a closed server = nil, want an error", p)
		} else {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) < 2*len(answers)+6 {
		t.Fatalf("only %d messages collected", len(msgs))
	}
	for _, m := range msgs {
		if strings.Contains(m, testToken) {
			t.Errorf("message holds the token: %q", m)
		}
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			// Another host, which must never see a request (and so the token).
			var elsewhere int
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				elsewhere++
				w.WriteHeader(http.StatusCreated)
			}))
			t.Cleanup(other.Close)
			otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)

			fake := newFake(t, p)
			fake.queue(fakeResponse{code: http.StatusTemporaryRedirect, header: map[string]string{"Location": otherURL + "/statuses"}})
			r, sleep := newReporter(t, fake.target(), report.Options{HTTPClient: &http.Client{}})
			err := r.Report(context.Background(), report.Status{State: report.StatePending})
			e := asError(t, err)
			if e.StatusCode != http.StatusTemporaryRedirect || e.Retryable() {
				t.Errorf("error = %+v, want StatusCode 307, not Retryable", e)
			}
			if want := "redirected to host " + strings.TrimPrefix(otherURL, "http://"); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			if elsewhere != 0 || fake.attempts() != 1 || len(sleep.got()) != 0 {
				t.Errorf("requests elsewhere = %d, attempts = %d, waits = %v; want 0, 1, none", elsewhere, fake.attempts(), sleep.got())
			}
		})
	}
}
