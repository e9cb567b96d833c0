package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ephemera-dev/ephemera/internal/report"
)

// The fakes below stand in for GitHub and GitLab, which cannot be reached
// from here. Each is an httptest server that checks every request against the
// provider's documented commit status API (method, path, auth header, JSON
// body fields and limits), records it, and answers 201 unless a test queued
// other answers.

const (
	testSHA   = "0123456789abcdef0123456789abcdef01234567"
	testToken = "tok-S3cr3t-0f-the-t3st-xyzzy"
)

// fakeResponse is one queued answer.
type fakeResponse struct {
	code   int
	header map[string]string
	body   string
}

// fakeForge is what the tests shared by both providers need of a fake.
type fakeForge interface {
	// target is a valid Target that reports to this fake.
	target() report.Target
	// queue sets the answers for the next requests, in order.
	queue(rs ...fakeResponse)
	// attempts is how many requests arrived.
	attempts() int
	// states are the provider states of the accepted requests, in order.
	states() []string
}

// fakeServer is the part of both fakes that queues answers and counts requests.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	n        int
	answers  []fakeResponse
	accepted []string
}

func (f *fakeServer) queue(rs ...fakeResponse) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers = append(f.answers, rs...)
}

func (f *fakeServer) attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fakeServer) states() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.accepted...)
}

// next counts a request and pops the queued answer for it, if any. Call with
// f.mu held.
func (f *fakeServer) next() (fakeResponse, bool) {
	f.n++
	if len(f.answers) == 0 {
		return fakeResponse{}, false
	}
	r := f.answers[0]
	f.answers = f.answers[1:]
	return r, true
}

func writeAnswer(w http.ResponseWriter, r fakeResponse) {
	for k, v := range r.header {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(r.code)
	fmt.Fprint(w, r.body)
}

// refuse fails the test and answers 400: the client sent what the real API
// would not take.
func (f *fakeServer) refuse(w http.ResponseWriter, format string, args ...any) {
	f.t.Helper()
	msg := fmt.Sprintf(format, args...)
	f.t.Errorf("fake got a request the real API would refuse: %s", msg)
	writeAnswer(w, fakeResponse{code: http.StatusBadRequest, body: fmt.Sprintf(`{"message":%q}`, msg)})
}

// decodeJSON decodes a JSON request body into v, refusing unknown fields.
func decodeJSON(r *http.Request, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return fmt.Errorf("Content-Type %q, want application/json", r.Header.Get("Content-Type"))
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return err
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body %s: %w", buf.String(), err)
	}
	return nil
}

// githubStatus is the body of POST /repos/{owner}/{repo}/statuses/{sha}
// (docs.github.com/rest/commits/statuses#create-a-commit-status).
type githubStatus struct {
	State       string `json:"state"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description,omitempty"`
	Context     string `json:"context,omitempty"`
}

// fakeGitHub is a fake GitHub Enterprise Server API at /api/v3/.
type fakeGitHub struct {
	fakeServer
	owner, repo string

	bodies []githubStatus // every request body, in order
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{fakeServer: fakeServer{t: t}, owner: "ephemera-dev", repo: "demo.app"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) target() report.Target {
	return report.Target{
		Provider: report.ProviderGitHub,
		Repo:     f.owner + "/" + f.repo,
		SHA:      testSHA,
		Context:  "ephemera/e2e",
		BaseURL:  f.srv.URL + "/api/v3/",
	}
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	answer, queued := f.next()
	if want := "POST"; r.Method != want {
		f.refuse(w, "method %s, want %s", r.Method, want)
		return
	}
	if got, want := r.URL.EscapedPath(), "/api/v3/repos/"+f.owner+"/"+f.repo+"/statuses/"+testSHA; got != want {
		f.refuse(w, "path %s, want %s", got, want)
		return
	}
	if got, want := r.Header.Get("Authorization"), "Bearer "+testToken; got != want {
		// What GitHub says to a bad token; a test checks it stays out of errors.
		writeAnswer(w, fakeResponse{code: http.StatusUnauthorized, body: fmt.Sprintf(`{"message":"Bad credentials: %s"}`, got)})
		f.t.Errorf("Authorization = %q, want %q", got, want)
		return
	}
	var body githubStatus
	if err := decodeJSON(r, &body); err != nil {
		f.refuse(w, "%v", err)
		return
	}
	f.bodies = append(f.bodies, body)
	switch body.State {
	case "pending", "success", "failure", "error":
	default:
		f.refuse(w, "state %q is not one of pending, success, failure, error", body.State)
		return
	}
	if n := utf8.RuneCountInString(body.Description); n > 140 {
		f.refuse(w, "description is %d characters, GitHub takes 140 at most", n)
		return
	}
	if queued {
		writeAnswer(w, answer)
		return
	}
	f.accepted = append(f.accepted, body.State)
	writeAnswer(w, fakeResponse{code: http.StatusCreated, body: fmt.Sprintf(
		`{"id":%d,"state":%q,"description":%q,"target_url":%q,"context":%q}`,
		f.n, body.State, body.Description, body.TargetURL, body.Context)})
}

// gitlabStatus is the body of POST /projects/{id}/statuses/{sha}
// (docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit).
type gitlabStatus struct {
	State       string `json:"state"`
	Name        string `json:"name,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description,omitempty"`
}

// gitlabEvents are GitLab's state machine events leading to each state, as
// named in its "Cannot transition status" messages.
var gitlabEvents = map[string]string{
	"pending": "enqueue", "running": "run", "success": "success", "failed": "drop", "canceled": "cancel",
}

// fakeGitLab is a fake GitLab API at /api/v4/. Like GitLab, it refuses to move
// a status that is pending or running to the same state, or from running back
// to pending.
type fakeGitLab struct {
	fakeServer
	project string

	bodies  []gitlabStatus    // every request body, in order
	current map[string]string // state by status name
}

func newFakeGitLab(t *testing.T, project string) *fakeGitLab {
	f := &fakeGitLab{fakeServer: fakeServer{t: t}, project: project, current: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitLab) target() report.Target {
	return report.Target{
		Provider: report.ProviderGitLab,
		Repo:     f.project,
		SHA:      testSHA,
		Context:  "ephemera/e2e",
		BaseURL:  f.srv.URL,
	}
}

func (f *fakeGitLab) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	answer, queued := f.next()
	if want := "POST"; r.Method != want {
		f.refuse(w, "method %s, want %s", r.Method, want)
		return
	}
	// The project ID is one URL-encoded path segment: "group%2Fsub%2Fname".
	path := r.URL.EscapedPath()
	rest, ok := strings.CutPrefix(path, "/api/v4/projects/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || parts[1] != "statuses" || parts[2] != testSHA {
		f.refuse(w, "path %s, want /api/v4/projects/{url-encoded id}/statuses/%s", path, testSHA)
		return
	}
	if id, err := url.PathUnescape(parts[0]); err != nil || id != f.project {
		f.refuse(w, "project %q in path %s, want %q", id, path, f.project)
		return
	}
	if got := r.Header.Get("PRIVATE-TOKEN"); got != testToken {
		writeAnswer(w, fakeResponse{code: http.StatusUnauthorized, body: fmt.Sprintf(`{"message":"401 Unauthorized %s"}`, got)})
		f.t.Errorf("PRIVATE-TOKEN = %q, want %q", got, testToken)
		return
	}
	var body gitlabStatus
	if err := decodeJSON(r, &body); err != nil {
		f.refuse(w, "%v", err)
		return
	}
	f.bodies = append(f.bodies, body)
	event, ok := gitlabEvents[body.State]
	if !ok {
		f.refuse(w, "state %q is not one of pending, running, success, failed, canceled", body.State)
		return
	}
	if n := utf8.RuneCountInString(body.Description); n > 255 {
		f.refuse(w, "description is %d characters, GitLab keeps 255 at most", n)
		return
	}
	if queued {
		writeAnswer(w, answer)
		return
	}
	if cur := f.current[body.Name]; (cur == body.State && (cur == "pending" || cur == "running")) ||
		(cur == "running" && body.State == "pending") {
		writeAnswer(w, fakeResponse{code: http.StatusBadRequest, body: fmt.Sprintf(
			`{"message":"Cannot transition status via :%s from :%s (Reason(s): Status cannot transition via \"%s\")"}`, event, cur, event)})
		return
	}
	f.current[body.Name] = body.State
	f.accepted = append(f.accepted, body.State)
	writeAnswer(w, fakeResponse{code: http.StatusCreated, body: fmt.Sprintf(
		`{"id":%d,"sha":%q,"status":%q,"name":%q,"description":%q,"target_url":%q}`,
		f.n, testSHA, body.State, body.Name, body.Description, body.TargetURL)})
}

// fakeSleep records the waits asked for instead of waiting.
type fakeSleep struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *fakeSleep) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return ctx.Err()
}

func (s *fakeSleep) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// providers are the providers that the shared tests run against.
var providers = []string{report.ProviderGitHub, report.ProviderGitLab}

// newFake starts a fake of provider.
func newFake(t *testing.T, provider string) fakeForge {
	if provider == report.ProviderGitHub {
		return newFakeGitHub(t)
	}
	return newFakeGitLab(t, "platform/ci/demo.app")
}

// newReporter makes a Reporter for target with the test token and a fake sleep.
func newReporter(t *testing.T, target report.Target, opts report.Options) (report.Reporter, *fakeSleep) {
	t.Helper()
	s := &fakeSleep{}
	if opts.Sleep == nil {
		opts.Sleep = s.sleep
	}
	r, err := report.New(target, testToken, opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", target, err)
	}
	return r, s
}
