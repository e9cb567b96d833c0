// Package printer writes command output as tables, YAML or JSON.
package printer

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// Formats accepted by -o.
const (
	Table = ""
	Wide  = "wide"
	YAML  = "yaml"
	JSON  = "json"
)

// ValidateFormat checks an -o value against the formats a command offers.
func ValidateFormat(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	names := make([]string, 0, len(allowed))
	for _, a := range allowed {
		if a != Table {
			names = append(names, a)
		}
	}
	return fmt.Errorf("unknown output format %q: use one of %s, or leave -o out for a table", format, strings.Join(names, ", "))
}

// Object writes v as YAML or JSON.
func Object(w io.Writer, format string, v any) error {
	switch format {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case YAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("format %q is not an object format", format)
}

// Rows writes a table with a header row, columns aligned.
func Rows(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// Age formats how long ago t was, like kubectl's AGE column: "5m", "3d4h";
// "-" for a zero time.
func Age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t))
}

// Relative formats a time in the future as "in 29m" and one in the past as
// "3m ago"; "-" for a zero time.
func Relative(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if d := t.Sub(now); d >= 0 {
		return "in " + duration.HumanDuration(d)
	}
	return duration.HumanDuration(now.Sub(t)) + " ago"
}

// OrDash returns s, or "-" when s is empty, for table cells.
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
