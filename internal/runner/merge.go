package runner

import (
	"bufio"
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
// apart. A cell without reports adds nothing. Reports are read one at a
// time and written as they are read; those larger than MaxReportSize are
// skipped and returned.
func MergeJUnit(w io.Writer, cells []Cell) (tooLarge []string, err error) {
	out := bufio.NewWriter(w)
	_, _ = out.WriteString(xml.Header + "<testsuites>\n")
	for _, c := range cells {
		skipped, err := walkReports(c.Dir, func(path string, data []byte) error {
			suites, err := parseRawSuites(data)
			if err != nil {
				return fmt.Errorf("read JUnit report %s: not JUnit XML: %w", path, err)
			}
			for _, s := range suites {
				writeCellSuite(out, c.Name, s)
			}
			return nil
		})
		tooLarge = append(tooLarge, skipped...)
		if err != nil {
			return tooLarge, err
		}
	}
	_, _ = out.WriteString("</testsuites>\n")
	return tooLarge, out.Flush()
}

func parseRawSuites(data []byte) ([]rawSuite, error) {
	var root rawSuites
	if err := xml.Unmarshal(data, &root); err == nil {
		return root.Suites, nil
	}
	var one rawSuite
	if err := xml.Unmarshal(data, &one); err != nil {
		return nil, err
	}
	return []rawSuite{one}, nil
}

func writeCellSuite(out *bufio.Writer, cell string, s rawSuite) {
	name := cell
	_, _ = out.WriteString("  <testsuite")
	for _, a := range s.Attrs {
		if a.Name.Local == "name" && a.Name.Space == "" {
			name = cell + "/" + a.Value
			continue
		}
		writeAttr(out, a.Name.Local, a.Value)
	}
	writeAttr(out, "name", name)
	_, _ = out.WriteString(">")
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
	_, _ = out.Write(inner)
	_, _ = out.WriteString("</testsuite>\n")
}

func writeAttr(out io.Writer, name, value string) {
	_, _ = io.WriteString(out, " "+name+`="`)
	_ = xml.EscapeText(out, []byte(value))
	_, _ = io.WriteString(out, `"`)
}
