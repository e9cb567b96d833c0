package report_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ephemera-dev/ephemera/internal/report"
)

func TestValidate(t *testing.T) {
	github := report.Target{Provider: "github", Repo: "ephemera-dev/ephemera", SHA: testSHA, Context: "ephemera/e2e"}
	gitlab := report.Target{Provider: "gitlab", Repo: "group/sub/name", SHA: testSHA, Context: "ephemera/e2e"}
	with := func(t report.Target, change func(*report.Target)) report.Target {
		change(&t)
		return t
	}
	tests := []struct {
		name   string
		target report.Target
		// want are phrases the error must hold; none means valid.
		want []string
	}{
		{name: "github", target: github},
		{name: "github enterprise", target: with(github, func(t *report.Target) { t.BaseURL = "https://ghe.example.com/api/v3/" })},
		{name: "gitlab path", target: gitlab},
		{name: "gitlab numeric id", target: with(gitlab, func(t *report.Target) { t.Repo = "4711" })},
		{name: "gitlab self-managed", target: with(gitlab, func(t *report.Target) { t.BaseURL = "https://gitlab.example.com" })},
		{name: "sha-256 commit", target: with(github, func(t *report.Target) { t.SHA = testSHA + "0123456789abcdef01234567" })},

		{name: "unknown provider", target: with(github, func(t *report.Target) { t.Provider = "bitbucket" }),
			want: []string{`provider "bitbucket" is not supported`, `use "github" or "gitlab"`}},
		{name: "empty provider", target: with(github, func(t *report.Target) { t.Provider = "" }),
			want: []string{"provider is empty"}},
		{name: "provider in capitals", target: with(github, func(t *report.Target) { t.Provider = "GitHub" }),
			want: []string{`provider "GitHub" is not supported`, "lowercase"}},
		{name: "empty github repo", target: with(github, func(t *report.Target) { t.Repo = "" }),
			want: []string{"repo is empty", `"owner/name"`}},
		{name: "empty gitlab repo", target: with(gitlab, func(t *report.Target) { t.Repo = " " }),
			want: []string{"repo is empty", "numeric project ID"}},
		{name: "github repo without owner", target: with(github, func(t *report.Target) { t.Repo = "ephemera" }),
			want: []string{`repo "ephemera" has no owner`, `"owner/name"`}},
		{name: "github repo with three parts", target: with(github, func(t *report.Target) { t.Repo = "a/b/c" }),
			want: []string{"more than two parts"}},
		{name: "github repo as URL", target: with(github, func(t *report.Target) { t.Repo = "https://github.com/ephemera-dev/ephemera" }),
			want: []string{"is a URL", `"owner/name"`}},
		{name: "github repo with .git", target: with(github, func(t *report.Target) { t.Repo = "ephemera-dev/ephemera.git" }),
			want: []string{`ends in ".git"`}},
		{name: "github owner with space", target: with(github, func(t *report.Target) { t.Repo = "my org/x" }),
			want: []string{`owner "my org"`}},
		{name: "gitlab repo without namespace", target: with(gitlab, func(t *report.Target) { t.Repo = "name" }),
			want: []string{`repo "name" has no namespace`}},
		{name: "gitlab repo with empty segment", target: with(gitlab, func(t *report.Target) { t.Repo = "group//name" }),
			want: []string{"is not a GitLab path segment"}},
		{name: "empty sha", target: with(github, func(t *report.Target) { t.SHA = "" }),
			want: []string{"sha is empty", "git rev-parse HEAD"}},
		{name: "short sha", target: with(github, func(t *report.Target) { t.SHA = "0123456" }),
			want: []string{`sha "0123456" is abbreviated (7 digits)`, "full 40-digit SHA"}},
		{name: "branch as sha", target: with(gitlab, func(t *report.Target) { t.SHA = "main" }),
			want: []string{`sha "main" is not a commit SHA`, "not a branch or tag name"}},
		{name: "sha of 41 digits", target: with(github, func(t *report.Target) { t.SHA = testSHA + "8" }),
			want: []string{"is not a commit SHA"}},
		{name: "empty context", target: with(github, func(t *report.Target) { t.Context = "" }),
			want: []string{"context is empty"}},
		{name: "long context", target: with(gitlab, func(t *report.Target) { t.Context = strings.Repeat("x", 256) }),
			want: []string{"context is 256 characters long"}},
		{name: "base URL without scheme", target: with(github, func(t *report.Target) { t.BaseURL = "ghe.example.com/api/v3" }),
			want: []string{`must start with "https://"`}},
		{name: "base URL with credentials", target: with(gitlab, func(t *report.Target) { t.BaseURL = "https://me:pw@gitlab.example.com" }),
			want: []string{"baseURL carries credentials"}},
		{name: "every problem at once", target: report.Target{Provider: "github", Repo: "ephemera", SHA: "abc"},
			want: []string{"has no owner", "abbreviated", "context is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.target.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error with %q", tt.want)
			}
			if !errors.Is(err, report.ErrInvalidTarget) {
				t.Errorf("Validate() = %v, does not wrap ErrInvalidTarget", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestNewRefusesBadTargetAndEmptyToken(t *testing.T) {
	good := report.Target{Provider: "gitlab", Repo: "4711", SHA: testSHA, Context: "ephemera/e2e"}

	bad := good
	bad.Repo = ""
	if r, err := report.New(bad, testToken, report.Options{}); !errors.Is(err, report.ErrInvalidTarget) || r != nil {
		t.Errorf("New(empty repo) = %v, %v; want nil and ErrInvalidTarget", r, err)
	}

	for _, token := range []string{"", " \n"} {
		r, err := report.New(good, token, report.Options{})
		if err == nil || r != nil {
			t.Fatalf("New(token %q) = %v, %v; want an error", token, r, err)
		}
		if want := `"api" scope`; !strings.Contains(err.Error(), want) {
			t.Errorf("New(token %q) = %q, want it to say %q", token, err, want)
		}
	}

	if _, err := report.New(good, testToken+"\n", report.Options{}); err != nil {
		t.Errorf("New(token with final newline) = %v, want nil", err)
	}
}
