package runner

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMergeJUnit(t *testing.T) {
	root := t.TempDir()
	write := func(rel, data string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return filepath.Dir(p)
	}
	a := write("a/junit.xml", goJUnit)
	write("b/sub/report.xml", pytestJUnit)
	withProps := write("c/junit.xml", `<testsuite name="props"><properties><property name="go.version" value="1.26"/></properties><testcase name="ok"/></testsuite>`)
	var out bytes.Buffer
	tooLarge, err := MergeJUnit(&out, []Cell{
		{Name: "default/v1.35.4", Dir: a},
		{Name: "default/v1.36.3", Dir: filepath.Join(root, "b")},
		{Name: "empty", Dir: filepath.Join(root, "none")},
		{Name: "props", Dir: withProps},
	})
	if err != nil || len(tooLarge) > 0 {
		t.Fatal(err, tooLarge)
	}

	// The merged document reads back with every case, named by cell.
	got, err := ParseJUnit(out.Bytes())
	if err != nil {
		t.Fatalf("merged document is not JUnit: %v\n%s", err, out.String())
	}
	want := Result{Tests: 7, Failures: 1, Errors: 1, Skipped: 1, Failing: []string{
		"default/v1.35.4/example.com/app/e2e/TestUpgrade", "default/v1.36.3/pytest/test_lint",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged results (-want +got):\n%s", diff)
	}

	// Every suite carries its cell as a property, once, next to its own.
	var doc struct {
		Suites []struct {
			Name  string `xml:"name,attr"`
			Tests string `xml:"tests,attr"`
			Props []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"properties>property"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Suites) != 3 {
		t.Fatalf("got %d suites, want 3:\n%s", len(doc.Suites), out.String())
	}
	cells := map[string]string{}
	for _, s := range doc.Suites {
		n := 0
		for _, p := range s.Props {
			if p.Name == CellPropertyName {
				cells[s.Name] = p.Value
				n++
			}
		}
		if n != 1 {
			t.Errorf("suite %q has %d %s properties, want 1", s.Name, n, CellPropertyName)
		}
	}
	wantCells := map[string]string{
		"default/v1.35.4/example.com/app/e2e": "default/v1.35.4",
		"default/v1.36.3/pytest":              "default/v1.36.3",
		"props/props":                         "props",
	}
	if diff := cmp.Diff(wantCells, cells); diff != "" {
		t.Errorf("cell properties (-want +got):\n%s", diff)
	}
	if doc.Suites[0].Tests != "4" {
		t.Errorf("suite attributes are not kept: tests=%q, want 4", doc.Suites[0].Tests)
	}
	if !strings.Contains(out.String(), `name="go.version"`) {
		t.Errorf("a suite's own properties are lost:\n%s", out.String())
	}
}

func TestMergeJUnitRefusesNonJUnit(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pom.xml"), []byte("<project/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := MergeJUnit(&bytes.Buffer{}, []Cell{{Name: "x", Dir: dir}})
	if err == nil || !strings.Contains(err.Error(), "pom.xml") {
		t.Fatalf("want an error naming pom.xml, got %v", err)
	}
}

func TestMergeJUnitSkipsLargeReports(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ok.xml"), []byte(pytestJUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.xml")
	writeLargeReport(t, big)
	var out bytes.Buffer
	tooLarge, err := MergeJUnit(&out, []Cell{{Name: "x", Dir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tooLarge) != 1 || tooLarge[0] != big {
		t.Errorf("too large: %v, want [%s]", tooLarge, big)
	}
	got, err := ParseJUnit(out.Bytes())
	if err != nil || got.Tests != 2 {
		t.Errorf("merged %+v (%v), want ok.xml's 2 tests alone", got, err)
	}
}
