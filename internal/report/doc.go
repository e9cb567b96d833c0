// Package report posts a test run's state as a commit status to GitHub (through
// go-github) or GitLab (through GitLab's client-go), retrying network errors, 5xx
// and rate limits with capped exponential backoff, and never putting the token
// in an error.
//
// A Reporter is made by New from a Target (provider, repository, commit,
// status name) and a token; each Report call sets that one status to a new
// state. Report is idempotent: repeating a state is harmless on both
// providers (GitLab's refusal to move a status to the state it already has is
// taken as success).
package report
