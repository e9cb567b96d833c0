package runner

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

const goJUnit = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" failures="1">
  <testsuite name="example.com/app/e2e" tests="4" failures="1" errors="0" skipped="1">
    <testcase classname="example.com/app/e2e" name="TestInstall" time="1.2"></testcase>
    <testcase classname="example.com/app/e2e" name="TestUpgrade" time="0.3"><failure message="Failed">upgrade timed out</failure></testcase>
    <testcase classname="example.com/app/e2e" name="TestSkip" time="0"><skipped message="no GPU"></skipped></testcase>
    <testcase classname="example.com/app/e2e" name="TestCRDs" time="0.1"></testcase>
  </testsuite>
</testsuites>`

const pytestJUnit = `<?xml version="1.0" encoding="utf-8"?>
<testsuite name="pytest" errors="1" failures="0" skipped="0" tests="2">
  <testcase classname="tests.test_chart" name="test_render"/>
  <testcase classname="tests.test_chart" name="test_lint"><error message="fixture failed"/></testcase>
</testsuite>`

func TestParseJUnit(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Result
	}{
		{"go testsuites root", goJUnit, Result{Tests: 4, Failures: 1, Skipped: 1, Failing: []string{"example.com/app/e2e/TestUpgrade"}}},
		{"pytest testsuite root", pytestJUnit, Result{Tests: 2, Errors: 1, Failing: []string{"pytest/test_lint"}}},
		{"empty suites", `<testsuites></testsuites>`, Result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseJUnit([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	if _, err := ParseJUnit([]byte("not xml at all")); err == nil || !strings.Contains(err.Error(), "not JUnit XML") {
		t.Errorf("garbage: %v", err)
	}
}

func TestReadJUnitDir(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "qa"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "unit.xml"), []byte(goJUnit), 0o644))
	must(os.WriteFile(filepath.Join(dir, "qa", "report.XML"), []byte(pytestJUnit), 0o644))
	must(os.WriteFile(filepath.Join(dir, "run.log"), []byte("not a report"), 0o644))
	got, err := ReadJUnitDir(dir)
	must(err)
	want := Result{Tests: 6, Failures: 1, Errors: 1, Skipped: 1, Failing: []string{"example.com/app/e2e/TestUpgrade", "pytest/test_lint"}}
	if d := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Files" }, cmp.Ignore())); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if len(got.Files) != 2 || got.Passed() {
		t.Errorf("files %v passed %v", got.Files, got.Passed())
	}
	if got.String() != "6 tests, 1 failed, 1 errors, 1 skipped" {
		t.Errorf("String() = %q", got.String())
	}

	none, err := ReadJUnitDir(filepath.Join(dir, "missing"))
	if err != nil || none.Tests != 0 {
		t.Errorf("missing dir: %+v %v", none, err)
	}
	must(os.WriteFile(filepath.Join(dir, "bad.xml"), []byte("<html>"), 0o644))
	if _, err := ReadJUnitDir(dir); err == nil || !strings.Contains(err.Error(), "bad.xml") {
		t.Errorf("a bad report: %v, want an error naming bad.xml", err)
	}
}

func TestReadJUnitDirSkipsLinks(t *testing.T) {
	outside := t.TempDir()
	target := filepath.Join(outside, "other.xml")
	if err := os.WriteFile(target, []byte(goJUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "own.xml"), []byte(pytestJUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "link.xml")); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJUnitDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Tests != 2 || len(got.Files) != 1 {
		t.Errorf("read %d tests from %v, want only own.xml's 2: a link is not followed", got.Tests, got.Files)
	}
}

// writeLargeReport writes a valid JUnit report one byte over MaxReportSize.
func writeLargeReport(t *testing.T, path string) {
	t.Helper()
	head := `<testsuite name="big"><testcase name="fails"><failure/></testcase><system-out>`
	tail := `</system-out></testsuite>`
	pad := strings.Repeat("x", MaxReportSize+1-len(head)-len(tail))
	if err := os.WriteFile(path, []byte(head+pad+tail), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadJUnitDirSkipsLargeReports(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ok.xml"), []byte(pytestJUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.xml")
	writeLargeReport(t, big)
	got, err := ReadJUnitDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Tests != 2 || len(got.TooLarge) != 1 || got.TooLarge[0] != big {
		t.Errorf("read %d tests, too large %v; want ok.xml's 2 tests and big.xml skipped", got.Tests, got.TooLarge)
	}
	if note := TooLargeNote(got.TooLarge); note != "JUnit report larger than 16 MiB skipped: "+big {
		t.Errorf("note %q", note)
	}
	// At the limit a report is read.
	if err := os.WriteFile(big, []byte(strings.Repeat(" ", MaxReportSize-len(pytestJUnit))+pytestJUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadJUnitDir(dir); err != nil || got.Tests != 4 || len(got.TooLarge) != 0 {
		t.Errorf("a report of exactly %d bytes: %d tests, too large %v, %v", MaxReportSize, got.Tests, got.TooLarge, err)
	}
}

// growingFS is a FAKE file system whose files report a size of 0, like a
// file still being written (or a /proc file): only reading tells.
type growingFS struct{ fstest.MapFS }

type zeroSizeFile struct{ fs.File }

type zeroSizeInfo struct{ fs.FileInfo }

func (zeroSizeInfo) Size() int64 { return 0 }

func (f zeroSizeFile) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	return zeroSizeInfo{fi}, err
}

func (g growingFS) Open(name string) (fs.File, error) {
	f, err := g.MapFS.Open(name)
	return zeroSizeFile{f}, err
}

func TestReadAtMost(t *testing.T) {
	for name, fsys := range map[string]fs.FS{
		"sized":   fstest.MapFS{"r.xml": {Data: []byte(strings.Repeat("x", 11))}},
		"growing": growingFS{fstest.MapFS{"r.xml": {Data: []byte(strings.Repeat("x", 11))}}},
	} {
		if _, err := readAtMost(fsys, "r.xml", 10); !errors.Is(err, errTooLarge) {
			t.Errorf("%s: 11 bytes with a limit of 10: %v", name, err)
		}
		if data, err := readAtMost(fsys, "r.xml", 11); err != nil || len(data) != 11 {
			t.Errorf("%s: 11 bytes with a limit of 11: %d, %v", name, len(data), err)
		}
	}
}
