package image_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ephemera-dev/ephemera/internal/image"
)

// writeFile writes a host file for an image and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
	return p
}

// dirEntries lists a directory's names.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

type layerEntry struct {
	Name    string
	Type    byte
	Mode    int64
	UID     int
	Content string
}

func TestPackRoundTrip(t *testing.T) {
	src := t.TempDir()
	opts := image.PackOptions{
		Ref: "example.com/team/hello:v1",
		Files: map[string]string{
			"/usr/bin/hello":      writeFile(t, src, "hello", "#!/bin/true\n", 0o755),
			"/etc/hello/app.conf": writeFile(t, src, "conf", "secret=1\n", 0o600),
		},
		Entrypoint: []string{"/usr/bin/hello"},
		Cmd:        []string{"--port", "8080"},
		Env:        []string{"PATH=/usr/bin", "MODE=test"},
		User:       "65535:65535",
	}
	out := t.TempDir()
	opts.Output = filepath.Join(out, "hello.tar")
	if err := image.Pack(context.Background(), opts); err != nil {
		t.Fatalf("Pack: %v", err)
	}
	if got := dirEntries(t, out); !cmp.Equal(got, []string{"hello.tar"}) {
		t.Errorf("output dir holds %q, want just hello.tar (no temporary files)", got)
	}
	fi, err := os.Stat(opts.Output)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("archive mode = %v, want 0644", fi.Mode())
	}

	a, err := image.Inspect(opts.Output)
	if err != nil {
		t.Fatalf("Inspect of a packed image: %v", err)
	}
	want := &image.Archive{Path: opts.Output, Format: image.FormatDocker, Names: []string{"example.com/team/hello:v1"}}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("Inspect (-want +got):\n%s", diff)
	}

	tag, _ := name.NewTag(opts.Ref)
	img, err := tarball.ImageFromPath(opts.Output, &tag)
	if err != nil {
		t.Fatalf("read the archive back: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform = %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	gotCfg := []any{cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.Env, cf.Config.User}
	wantCfg := []any{opts.Entrypoint, opts.Cmd, opts.Env, opts.User}
	if diff := cmp.Diff(wantCfg, gotCfg); diff != "" {
		t.Errorf("config entrypoint, cmd, env, user (-want +got):\n%s", diff)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []layerEntry
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got = append(got, layerEntry{hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, string(b)})
	}
	wantLayer := []layerEntry{
		{"etc/", tar.TypeDir, 0o755, 0, ""},
		{"etc/hello/", tar.TypeDir, 0o755, 0, ""},
		{"etc/hello/app.conf", tar.TypeReg, 0o600, 0, "secret=1\n"},
		{"usr/", tar.TypeDir, 0o755, 0, ""},
		{"usr/bin/", tar.TypeDir, 0o755, 0, ""},
		{"usr/bin/hello", tar.TypeReg, 0o755, 0, "#!/bin/true\n"},
	}
	if diff := cmp.Diff(wantLayer, got); diff != "" {
		t.Errorf("layer (-want +got):\n%s", diff)
	}

	// The same files make the same image, so re-packing is idempotent.
	digest1, _ := img.Digest()
	opts.Output = filepath.Join(out, "again.tar")
	if err := image.Pack(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	img2, err := tarball.ImageFromPath(opts.Output, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if digest2, _ := img2.Digest(); digest1 != digest2 {
		t.Errorf("packing the same files twice gave digests %s and %s", digest1, digest2)
	}
}

func TestPackDockerHubName(t *testing.T) {
	src := t.TempDir()
	out := filepath.Join(t.TempDir(), "app.tar")
	err := image.Pack(context.Background(), image.PackOptions{
		Ref:    "app:v1",
		Files:  map[string]string{"/app": writeFile(t, src, "app", "x", 0o755)},
		Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := image.Inspect(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"docker.io/library/app:v1"}; !cmp.Equal(a.Names, want) {
		t.Errorf("names = %q, want %q (as containerd normalises them)", a.Names, want)
	}
}

func TestPackErrors(t *testing.T) {
	src := t.TempDir()
	bin := writeFile(t, src, "bin", "x", 0o755)
	tests := []struct {
		name    string
		opts    image.PackOptions
		ctx     func() context.Context
		wantErr string
	}{
		{name: "invalid name", opts: image.PackOptions{Ref: "Bad Name:v1", Files: map[string]string{"/app": bin}}, wantErr: `invalid image name "Bad Name:v1"`},
		{name: "no files", opts: image.PackOptions{Ref: "app:v1"}, wantErr: "no files"},
		{name: "relative image path", opts: image.PackOptions{Ref: "app:v1", Files: map[string]string{"app": bin}}, wantErr: `image path "app"`},
		{name: "unclean image path", opts: image.PackOptions{Ref: "app:v1", Files: map[string]string{"/a/../app": bin}}, wantErr: `image path "/a/../app"`},
		{name: "missing host file", opts: image.PackOptions{Ref: "app:v1", Files: map[string]string{"/app": filepath.Join(src, "nope")}}, wantErr: "no such file"},
		{name: "directory as file", opts: image.PackOptions{Ref: "app:v1", Files: map[string]string{"/app": src}}, wantErr: "not a regular file"},
		{
			name: "cancelled", opts: image.PackOptions{Ref: "app:v1", Files: map[string]string{"/app": bin}},
			ctx:     func() context.Context { ctx, cancel := context.WithCancel(context.Background()); cancel(); return ctx },
			wantErr: "context canceled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			tt.opts.Output = filepath.Join(out, "app.tar")
			// An archive from before must survive a failed pack.
			if err := os.WriteFile(tt.opts.Output, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			err := image.Pack(ctx, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Pack = %v, want error containing %q", err, tt.wantErr)
			}
			if b, _ := os.ReadFile(tt.opts.Output); string(b) != "old" {
				t.Errorf("the old archive was changed to %q", b)
			}
			if got := dirEntries(t, out); !cmp.Equal(got, []string{"app.tar"}) {
				t.Errorf("output dir holds %q after a failed pack, want just the old app.tar", got)
			}
		})
	}
	if err := image.Pack(context.Background(), image.PackOptions{Ref: "app:v1", Files: map[string]string{"/app": bin}, Output: filepath.Join(src, "no-dir", "x.tar")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Pack into a missing dir = %v, want ErrNotExist", err)
	}
}
