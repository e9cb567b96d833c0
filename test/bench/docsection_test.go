package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRewriteSection(t *testing.T) {
	block := func(s string) string { return beginMarker + "\n\n" + s + "\n\n" + endMarker + "\n" }
	for _, tc := range []struct {
		name, doc, section, want string
		wantErr                  error
	}{
		{
			name:    "replaces between the markers, keeps the rest",
			doc:     "# Benchmarks\n\nintro\n\n" + block("old\ntable") + "\n## Issue 4\n\nhand-written\n",
			section: "new\n",
			want:    "# Benchmarks\n\nintro\n\n" + block("new") + "\n## Issue 4\n\nhand-written\n",
		},
		{
			name:    "markers with other wording",
			doc:     "# B\n<!-- BEGIN GENERATED old -->\nold\n<!-- END GENERATED old -->\ntail\n",
			section: "new",
			want:    "# B\n" + block("new") + "tail\n",
		},
		{
			name:    "no markers: after the title",
			doc:     "# Benchmarks\n\n## Issue 2\n\nkept\n",
			section: "new",
			want:    "# Benchmarks\n\n" + block("new") + "\n## Issue 2\n\nkept\n",
		},
		{
			name:    "no title: at the top",
			doc:     "text\n",
			section: "new",
			want:    block("new") + "\ntext\n",
		},
		{
			name:    "empty doc",
			section: "new",
			want:    block("new"),
		},
		{
			name:    "a second rewrite changes nothing more",
			doc:     "# Benchmarks\n\n" + block("new") + "\n## Issue 2\n",
			section: "new",
			want:    "# Benchmarks\n\n" + block("new") + "\n## Issue 2\n",
		},
		{name: "begin without end", doc: "# B\n" + beginMarker + "\nx\n", wantErr: errMarkers},
		{name: "end without begin", doc: "# B\n" + endMarker + "\n", wantErr: errMarkers},
		{name: "end before begin", doc: endMarker + "\n" + beginMarker + "\n", wantErr: errMarkers},
		{name: "two begins", doc: beginMarker + "\n" + beginMarker + "\n" + endMarker + "\n", wantErr: errMarkers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rewriteSection(tc.doc, tc.section)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("doc (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\n## Issue 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, section := range []string{"first", "second"} {
		if err := writeSection(path, section); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\n" + beginMarker + "\n\nsecond\n\n" + endMarker + "\n\n## Issue 2\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("doc (-want +got):\n%s", diff)
	}
	bad := filepath.Join(t.TempDir(), "bad.md")
	if err := os.WriteFile(bad, []byte(beginMarker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(bad, "x"); !errors.Is(err, errMarkers) {
		t.Errorf("writeSection with a lone marker: err = %v, want %v", err, errMarkers)
	}
}
