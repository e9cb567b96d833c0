package runner

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
)

// CellPropertyName is the JUnit suite property MergeJUnit records a
// matrix cell under.
const CellPropertyName = "ephemera.cell"

// Cell is one matrix cell's JUnit reports.
type Cell struct {
	// Name is the cell, like default/v1.35.4.
	Name string
	// Dir holds the cell's *.xml reports (searched recursively).
	Dir string
}

// rawSuite keeps a <testsuite> as it was written, but for its name.
type rawSuite struct {
	XMLName xml.Name   `xml:"testsuite"`
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   []byte     `xml:",innerxml"`
}

type rawSuites struct {
	XMLName xml.Name   `xml:"testsuites"`
	Suites  []rawSuite `xml:"testsuite"`
}

// MergeJUnit writes one <testsuites> document with every suite of every
// cell. Each suite's name gets the cell as a prefix ("cell/suite") and a
// property ephemera.cell=cell, so CI tools that show suites tell the cells
// apart. A cell without reports adds nothing.
func MergeJUnit(w io.Writer, cells []Cell) error {
	var out bytes.Buffer
	out.WriteString(xml.Header + "<testsuites>\n")
	for _, c := range cells {
		suites, err := readRawSuites(c.Dir)
		if err != nil {
			return err
		}
		for _, s := range suites {
			writeCellSuite(&out, c.Name, s)
		}
	}
	out.WriteString("</testsuites>\n")
	_, err := w.Write(out.Bytes())
	return err
}

func readRawSuites(dir string) ([]rawSuite, error) {
	var all []rawSuite
	err := walkReports(dir, func(path string, data []byte) error {
		var root rawSuites
		if err := xml.Unmarshal(data, &root); err == nil {
			all = append(all, root.Suites...)
			return nil
		}
		var one rawSuite
		if err := xml.Unmarshal(data, &one); err != nil {
			return fmt.Errorf("read JUnit report %s: not JUnit XML: %w", path, err)
		}
		all = append(all, one)
		return nil
	})
	return all, err
}

func writeCellSuite(out *bytes.Buffer, cell string, s rawSuite) {
	name := cell
	out.WriteString("  <testsuite")
	for _, a := range s.Attrs {
		if a.Name.Local == "name" && a.Name.Space == "" {
			name = cell + "/" + a.Value
			continue
		}
		writeAttr(out, a.Name.Local, a.Value)
	}
	writeAttr(out, "name", name)
	out.WriteString(">")
	var prop bytes.Buffer
	prop.WriteString(`<property`)
	writeAttr(&prop, "name", CellPropertyName)
	writeAttr(&prop, "value", cell)
	prop.WriteString(`/>`)
	inner := s.Inner
	if i := bytes.Index(inner, []byte("<properties>")); i >= 0 {
		i += len("<properties>")
		inner = append(append(append([]byte{}, inner[:i]...), prop.Bytes()...), inner[i:]...)
	} else {
		inner = append([]byte("<properties>"+prop.String()+"</properties>"), inner...)
	}
	out.Write(inner)
	out.WriteString("</testsuite>\n")
}

func writeAttr(out *bytes.Buffer, name, value string) {
	out.WriteString(" " + name + `="`)
	_ = xml.EscapeText(out, []byte(value))
	out.WriteString(`"`)
}
