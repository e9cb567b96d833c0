// Package runner runs tests against a cluster: it executes them, keeps
// their logs, and reads their JUnit XML results.
package runner

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Result sums up JUnit XML reports.
type Result struct {
	// Files are the reports read.
	Files []string `json:"files,omitempty"`
	// Tests, Failures, Errors and Skipped count test cases.
	Tests    int `json:"tests"`
	Failures int `json:"failures"`
	Errors   int `json:"errors"`
	Skipped  int `json:"skipped"`
	// Failing names the failed and errored test cases, as "suite/name".
	Failing []string `json:"failing,omitempty"`
}

// Passed reports whether no test case failed or errored.
func (r Result) Passed() bool { return r.Failures == 0 && r.Errors == 0 }

// String is a one-line summary like "12 tests, 1 failed, 0 errors, 2 skipped".
func (r Result) String() string {
	return fmt.Sprintf("%d tests, %d failed, %d errors, %d skipped", r.Tests, r.Failures, r.Errors, r.Skipped)
}

// The JUnit XML schema as written by go-junit-report, gotestsum, pytest,
// Ginkgo and Maven surefire: a <testsuites> root or a single <testsuite>.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	XMLName xml.Name     `xml:"testsuite"`
	Name    string       `xml:"name,attr"`
	Cases   []junitCase  `xml:"testcase"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitCase struct {
	Name      string    `xml:"name,attr"`
	Classname string    `xml:"classname,attr"`
	Failure   *struct{} `xml:"failure"`
	Error     *struct{} `xml:"error"`
	Skipped   *struct{} `xml:"skipped"`
}

// ParseJUnit reads one JUnit XML document.
func ParseJUnit(data []byte) (Result, error) {
	var suites []junitSuite
	var root junitSuites
	if err := xml.Unmarshal(data, &root); err == nil {
		suites = root.Suites
	} else {
		var one junitSuite
		if err2 := xml.Unmarshal(data, &one); err2 != nil {
			return Result{}, fmt.Errorf("not JUnit XML (want a <testsuites> or <testsuite> root): %w", err)
		}
		suites = []junitSuite{one}
	}
	var r Result
	var walk func(s junitSuite)
	walk = func(s junitSuite) {
		for _, c := range s.Cases {
			r.Tests++
			name := c.Name
			if prefix := cmpOr(s.Name, c.Classname); prefix != "" {
				name = prefix + "/" + c.Name
			}
			switch {
			case c.Failure != nil:
				r.Failures++
				r.Failing = append(r.Failing, name)
			case c.Error != nil:
				r.Errors++
				r.Failing = append(r.Failing, name)
			case c.Skipped != nil:
				r.Skipped++
			}
		}
		for _, sub := range s.Suites {
			walk(sub)
		}
	}
	for _, s := range suites {
		walk(s)
	}
	return r, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ReadJUnitDir reads every *.xml file under dir as JUnit and sums them up.
// A dir without reports gives an empty Result; a file that is not JUnit is
// an error naming it.
func ReadJUnitDir(dir string) (Result, error) {
	var total Result
	err := walkReports(dir, func(path string, data []byte) error {
		r, err := ParseJUnit(data)
		if err != nil {
			return fmt.Errorf("read JUnit report %s: %w", path, err)
		}
		total.Files = append(total.Files, path)
		total.Tests += r.Tests
		total.Failures += r.Failures
		total.Errors += r.Errors
		total.Skipped += r.Skipped
		total.Failing = append(total.Failing, r.Failing...)
		return nil
	})
	slices.Sort(total.Failing)
	return total, err
}

// walkReports calls fn with every regular *.xml file under dir, in lexical
// order; a missing dir has none.
func walkReports(dir string, fn func(path string, data []byte) error) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == dir {
				return fs.SkipAll
			}
			return err
		}
		// Regular files only: a link (a test may write one) is not
		// followed out of dir.
		if !d.Type().IsRegular() || !strings.EqualFold(filepath.Ext(path), ".xml") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return fn(path, data)
	})
}
