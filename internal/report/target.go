package report

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Provider names accepted in Target.Provider.
const (
	// ProviderGitHub reports through the GitHub (or GitHub Enterprise Server) REST API.
	ProviderGitHub = "github"
	// ProviderGitLab reports through the GitLab REST API (v4).
	ProviderGitLab = "gitlab"
)

// maxContextLen bounds Target.Context: GitLab stores the name in a 255
// character column, and GitHub documents no larger limit.
const maxContextLen = 255

// ErrInvalidTarget is wrapped by every error of Target.Validate (and so of New
// for a bad target). It is terminal: retrying with the same target cannot work.
var ErrInvalidTarget = errors.New("invalid report target")

// Target says where to report.
type Target struct {
	// Provider is ProviderGitHub ("github") or ProviderGitLab ("gitlab").
	Provider string
	// Repo is, for GitHub, "owner/name"; for GitLab, the project's full path
	// ("group/sub/name") or its numeric ID ("1234").
	Repo string
	// SHA is the full commit SHA: 40 hexadecimal digits (64 in a SHA-256
	// repository).
	SHA string
	// Context names the status, e.g. "ephemera/e2e": GitHub's "context",
	// GitLab's "name". Reports with the same Context replace each other.
	Context string
	// BaseURL is optional: a GitHub Enterprise Server API URL
	// ("https://ghe.example.com/api/v3/"; "/api/v3/" is added when missing) or
	// a GitLab instance URL ("https://gitlab.example.com"; "/api/v4/" is added).
	// Empty means api.github.com or gitlab.com.
	BaseURL string
}

var (
	// GitHub user and organisation names: letters, digits and hyphens; "_"
	// appears in enterprise managed user names.
	githubOwnerRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)
	// GitHub repository names: letters, digits, ".", "_" and "-".
	githubNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	// One segment of a GitLab namespace or project path.
	gitlabSegmentRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}$`)
	gitlabIDRE      = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
	shaRE           = regexp.MustCompile(`^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$`)
)

// Validate says whether t can be reported to, naming every problem and how to
// fix it. Its errors wrap ErrInvalidTarget.
func (t Target) Validate() error {
	var problems []string
	switch t.Provider {
	case ProviderGitHub, ProviderGitLab:
		if p := t.repoProblem(); p != "" {
			problems = append(problems, p)
		}
	case "":
		problems = append(problems, `provider is empty: set it to "github" or "gitlab"`)
	default:
		problems = append(problems, fmt.Sprintf(`provider %q is not supported: use "github" or "gitlab" (lowercase)`, t.Provider))
	}
	if p := shaProblem(t.SHA); p != "" {
		problems = append(problems, p)
	}
	switch n := utf8.RuneCountInString(t.Context); {
	case strings.TrimSpace(t.Context) == "":
		problems = append(problems, `context is empty: name the status, e.g. "ephemera/e2e"`)
	case n > maxContextLen:
		problems = append(problems, fmt.Sprintf("context is %d characters long: keep it to %d", n, maxContextLen))
	}
	if p := baseURLProblem(t.BaseURL); p != "" {
		problems = append(problems, p)
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidTarget, strings.Join(problems, "; "))
}

// repoProblem checks Repo for t.Provider; "" means it is fine.
func (t Target) repoProblem() string {
	repo := t.Repo
	if strings.TrimSpace(repo) == "" {
		if t.Provider == ProviderGitHub {
			return `repo is empty: set it to "owner/name"`
		}
		return `repo is empty: set it to the project path "group/name" or the numeric project ID`
	}
	if strings.Contains(repo, "://") || strings.HasPrefix(repo, "git@") {
		if t.Provider == ProviderGitHub {
			return fmt.Sprintf(`repo %q is a URL: write it as "owner/name"`, repo)
		}
		return fmt.Sprintf(`repo %q is a URL: write it as the project path "group/name" (and put the host in BaseURL)`, repo)
	}
	if strings.HasSuffix(repo, ".git") {
		return fmt.Sprintf(`repo %q ends in ".git": drop it`, repo)
	}
	if t.Provider == ProviderGitHub {
		owner, name, ok := strings.Cut(repo, "/")
		switch {
		case !ok:
			return fmt.Sprintf(`repo %q has no owner: write it as "owner/name"`, repo)
		case strings.Contains(name, "/"):
			return fmt.Sprintf(`repo %q has more than two parts: write it as "owner/name"`, repo)
		case !githubOwnerRE.MatchString(owner):
			return fmt.Sprintf(`repo %q: owner %q is not a GitHub user or organisation name (letters, digits and "-")`, repo, owner)
		case !githubNameRE.MatchString(name) || name == "." || name == "..":
			return fmt.Sprintf(`repo %q: %q is not a GitHub repository name (letters, digits, ".", "_" and "-")`, repo, name)
		}
		return ""
	}
	if gitlabIDRE.MatchString(repo) {
		return ""
	}
	segments := strings.Split(repo, "/")
	if len(segments) < 2 {
		return fmt.Sprintf(`repo %q has no namespace: write the project's full path "group/name" or give its numeric ID`, repo)
	}
	for _, s := range segments {
		if !gitlabSegmentRE.MatchString(s) {
			return fmt.Sprintf(`repo %q: %q is not a GitLab path segment (letters, digits, "_", "-", "." and "+"; no empty segment or leading/trailing "/")`, repo, s)
		}
	}
	return ""
}

// shaProblem checks a commit SHA; "" means it is fine.
func shaProblem(sha string) string {
	switch {
	case sha == "":
		return "sha is empty: set it to the full commit SHA (git rev-parse HEAD)"
	case shaRE.MatchString(sha):
		return ""
	case len(sha) < 40 && strings.Trim(sha, "0123456789abcdefABCDEF") == "":
		return fmt.Sprintf("sha %q is abbreviated (%d digits): give the full 40-digit SHA (git rev-parse HEAD)", sha, len(sha))
	default:
		return fmt.Sprintf("sha %q is not a commit SHA: give the full 40 hexadecimal digits, not a branch or tag name (git rev-parse HEAD)", sha)
	}
}

// baseURLProblem checks an optional base URL; "" means it is fine.
func baseURLProblem(base string) string {
	if base == "" {
		return ""
	}
	u, err := url.Parse(base)
	switch {
	case err != nil:
		// url.Parse's error quotes the input, which has no credentials only if
		// it parsed; say nothing of the text itself.
		return `baseURL does not parse as a URL: give it as "https://HOST/..."`
	case u.User != nil:
		return "baseURL carries credentials: remove them and pass the token to New"
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Sprintf(`baseURL %q must start with "https://"`, base)
	case u.Host == "":
		return fmt.Sprintf(`baseURL %q has no host: give it as "https://HOST/..."`, base)
	case u.RawQuery != "" || u.Fragment != "":
		// Not quoted: a query may hold a secret.
		return "baseURL has a query or fragment: remove it"
	}
	return ""
}
