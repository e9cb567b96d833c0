// Package runner runs tests against a cluster: it executes them, keeps
// their logs, and reads their JUnit XML results.
package runner

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
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
	// TooLarge are the reports skipped for being larger than
	// MaxReportSize.
	TooLarge []string `json:"tooLarge,omitempty"`
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

// MaxReportSize is the largest JUnit report read: a larger one is skipped
// (and named in Result.TooLarge), so a runner cannot make the server or
// the CLI read without bound into memory.
const MaxReportSize = 16 << 20

// ReadJUnitDir reads every *.xml file under dir as JUnit and sums them up.
// A dir without reports gives an empty Result; a file that is not JUnit is
// an error naming it; one larger than MaxReportSize is skipped and named
// in TooLarge.
func ReadJUnitDir(dir string) (Result, error) {
	var total Result
	tooLarge, err := walkReports(dir, func(path string, data []byte) error {
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
	total.TooLarge = tooLarge
	slices.Sort(total.Failing)
	return total, err
}

// TooLargeNote says which reports were skipped for their size, or "".
func TooLargeNote(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	return fmt.Sprintf("JUnit report larger than %d MiB skipped: %s", MaxReportSize>>20, strings.Join(paths, ", "))
}

// walkReports calls fn with every regular *.xml file under dir, in lexical
// order, and returns those larger than MaxReportSize, which it skips; a
// missing dir has none.
func walkReports(dir string, fn func(path string, data []byte) error) (tooLarge []string, err error) {
	// The runner writes dir: read it through an os.Root, so a link it
	// leaves (or swaps in during the walk) cannot reach out of it.
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fsys := root.FS()
	err = fs.WalkDir(fsys, ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Regular files only: a link (a test may write one) is not
		// followed.
		if !d.Type().IsRegular() || !strings.EqualFold(path.Ext(rel), ".xml") {
			return nil
		}
		full := filepath.Join(dir, filepath.FromSlash(rel))
		data, err := readAtMost(fsys, rel, MaxReportSize)
		if errors.Is(err, errTooLarge) {
			tooLarge = append(tooLarge, full)
			return nil
		}
		if err != nil {
			return err
		}
		return fn(full, data)
	})
	return tooLarge, err
}

var errTooLarge = errors.New("too large")

// readAtMost reads name, or returns errTooLarge if it has more than limit
// bytes; it never holds more than limit+1.
func readAtMost(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > limit {
		return nil, errTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errTooLarge
	}
	return data, nil
}
