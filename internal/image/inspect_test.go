package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-dev/ephemera/internal/image"
)

// file is one entry of a test archive.
type file struct {
	name string
	data []byte
}

// tarBytes makes a tar of files, in order.
func tarBytes(t *testing.T, files []file) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func blobPath(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }

const (
	ociManifestType = "application/vnd.oci.image.manifest.v1+json"
	ociIndexType    = "application/vnd.oci.image.index.v1+json"
)

// ociImage is a test image in an OCI layout: its manifest descriptor and blobs.
type ociImage struct {
	desc  map[string]any
	blobs []file
}

// newOCIImage makes an image for arch with one layer.
func newOCIImage(t *testing.T, arch string, layer string) ociImage {
	t.Helper()
	cfg := mustJSON(t, map[string]any{"os": "linux", "architecture": arch, "rootfs": map[string]any{"type": "layers"}})
	lay := gzipBytes(t, tarBytes(t, []file{{"app", []byte(layer)}}))
	man := mustJSON(t, map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociManifestType,
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digestOf(cfg), "size": len(cfg)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digestOf(lay), "size": len(lay)}},
	})
	return ociImage{
		desc: map[string]any{
			"mediaType": ociManifestType, "digest": digestOf(man), "size": len(man),
			"platform": map[string]any{"os": "linux", "architecture": arch},
		},
		blobs: []file{{blobPath(digestOf(cfg)), cfg}, {blobPath(digestOf(lay)), lay}, {blobPath(digestOf(man)), man}},
	}
}

// ociLayout makes an OCI layout tar whose index lists descs, holding blobs.
func ociLayout(t *testing.T, descs []map[string]any, blobs []file) []byte {
	t.Helper()
	files := append([]file{{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}}, blobs...)
	files = append(files, file{"index.json", mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": ociIndexType, "manifests": descs})})
	return tarBytes(t, files)
}

func named(desc map[string]any, annotations map[string]string) map[string]any {
	d := map[string]any{}
	for k, v := range desc {
		d[k] = v
	}
	if annotations != nil {
		d["annotations"] = annotations
	}
	return d
}

// dockerSave makes a docker-save tar of one image.
func dockerSave(t *testing.T, arch string, repoTags []string, skipLayer bool) []byte {
	t.Helper()
	cfg := mustJSON(t, map[string]any{"os": "linux", "architecture": arch})
	lay := tarBytes(t, []file{{"app", []byte("x")}})
	cfgName := strings.TrimPrefix(digestOf(cfg), "sha256:") + ".json"
	layName := "0123/layer.tar"
	files := []file{{cfgName, cfg}}
	if !skipLayer {
		files = append(files, file{layName, lay})
	}
	files = append(files, file{"manifest.json", mustJSON(t, []map[string]any{{"Config": cfgName, "RepoTags": repoTags, "Layers": []string{layName}}})})
	return tarBytes(t, files)
}

func writeArchive(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectValid(t *testing.T) {
	amd := newOCIImage(t, "amd64", "amd")
	arm := newOCIImage(t, "arm64", "arm")
	// A multi-platform index of which only the amd64 blobs were saved.
	multiMan := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": ociIndexType, "manifests": []any{arm.desc, amd.desc}})
	multiDesc := map[string]any{"mediaType": ociIndexType, "digest": digestOf(multiMan), "size": len(multiMan)}
	multiBlobs := append(append([]file{}, amd.blobs...), file{blobPath(digestOf(multiMan)), multiMan})

	packed := filepath.Join(t.TempDir(), "packed.tar")
	if err := image.Pack(context.Background(), image.PackOptions{
		Ref: "localhost/app:v2", Files: map[string]string{"/app": writeFile(t, t.TempDir(), "app", "x", 0o755)}, Output: packed,
	}); err != nil {
		t.Fatal(err)
	}
	packedData, err := os.ReadFile(packed)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name            string
		data            []byte
		wantFormat      image.Format
		wantCompression string
		wantNames       []string
	}{
		{
			name:       "docker save, two tags",
			data:       dockerSave(t, "amd64", []string{"app:v1", "example.com/app:v1"}, false),
			wantFormat: image.FormatDocker,
			wantNames:  []string{"docker.io/library/app:v1", "example.com/app:v1"},
		},
		{
			name:            "docker save, gzip-compressed",
			data:            gzipBytes(t, dockerSave(t, "amd64", []string{"app:v1"}, false)),
			wantFormat:      image.FormatDocker,
			wantCompression: image.CompressionGzip,
			wantNames:       []string{"docker.io/library/app:v1"},
		},
		{
			name:       "packed by ephemera",
			data:       packedData,
			wantFormat: image.FormatDocker,
			wantNames:  []string{"localhost/app:v2"},
		},
		{
			name:       "OCI layout named by containerd's annotation",
			data:       ociLayout(t, []map[string]any{named(amd.desc, map[string]string{image.AnnotationImageName: "docker.io/library/app:v1", image.AnnotationRefName: "v1"})}, amd.blobs),
			wantFormat: image.FormatOCI,
			wantNames:  []string{"docker.io/library/app:v1"},
		},
		{
			name:       "OCI layout named by a full ref.name",
			data:       ociLayout(t, []map[string]any{named(amd.desc, map[string]string{image.AnnotationRefName: "example.com/app:v1"})}, amd.blobs),
			wantFormat: image.FormatOCI,
			wantNames:  []string{"example.com/app:v1"},
		},
		{
			name:       "OCI multi-platform index with only amd64 saved",
			data:       ociLayout(t, []map[string]any{named(multiDesc, map[string]string{image.AnnotationImageName: "example.com/multi:v1"})}, multiBlobs),
			wantFormat: image.FormatOCI,
			wantNames:  []string{"example.com/multi:v1"},
		},
		{
			name: "OCI layout with ./ prefixed names",
			data: func() []byte {
				var files []file
				for _, f := range append([]file{{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}}, amd.blobs...) {
					files = append(files, file{"./" + f.name, f.data})
				}
				idx := mustJSON(t, map[string]any{"manifests": []any{named(amd.desc, map[string]string{image.AnnotationImageName: "example.com/dot:v1"})}})
				return tarBytes(t, append(files, file{"./index.json", idx}))
			}(),
			wantFormat: image.FormatOCI,
			wantNames:  []string{"example.com/dot:v1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeArchive(t, tt.data)
			got, err := image.Inspect(p)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			want := &image.Archive{Path: p, Format: tt.wantFormat, Compression: tt.wantCompression, Names: tt.wantNames}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Inspect (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInspectRejects(t *testing.T) {
	amd := newOCIImage(t, "amd64", "amd")
	arm := newOCIImage(t, "arm64", "arm")
	withName := func(n string) map[string]any {
		return named(amd.desc, map[string]string{image.AnnotationImageName: n})
	}
	packed := filepath.Join(t.TempDir(), "packed.tar")
	if err := image.Pack(context.Background(), image.PackOptions{
		Ref: "localhost/app:v2", Files: map[string]string{"/app": writeFile(t, t.TempDir(), "app", strings.Repeat("binary", 10000), 0o755)}, Output: packed,
	}); err != nil {
		t.Fatal(err)
	}
	packedData, err := os.ReadFile(packed)
	if err != nil {
		t.Fatal(err)
	}
	// A docker-save tar and where its last file, manifest.json, begins.
	saved := dockerSave(t, "amd64", []string{"app:v1"}, false)
	manifestAt := bytes.Index(saved, []byte("manifest.json"))
	armOnlyMan := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": ociIndexType, "manifests": []any{arm.desc}})
	armOnlyDesc := map[string]any{"mediaType": ociIndexType, "digest": digestOf(armOnlyMan), "size": len(armOnlyMan), "annotations": map[string]string{image.AnnotationImageName: "example.com/arm:v1"}}

	tests := []struct {
		name string
		data []byte
		want []string // substrings of the error after "PATH: "
	}{
		{name: "empty file", data: nil, want: []string{"the file is empty", "docker save IMAGE -o FILE"}},
		{name: "text file", data: []byte("hello, I am not an image\n"), want: []string{"not a tar archive", "docker save"}},
		{name: "random bytes", data: bytes.Repeat([]byte{0xab}, 2000), want: []string{"not a tar archive"}},
		{name: "empty tar", data: tarBytes(t, nil), want: []string{"holds no files"}},
		{name: "zstd", data: []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0}, want: []string{"zstd", "zstd -d"}},
		{name: "corrupt gzip", data: append([]byte{0x1f, 0x8b, 8, 0}, bytes.Repeat([]byte{0xff}, 100)...), want: []string{"the gzip data is corrupt"}},
		{
			name: "no index.json or manifest.json",
			data: tarBytes(t, []file{{"hello.txt", []byte("hi")}}),
			want: []string{"not an image archive: no index.json (OCI layout) or manifest.json (docker save) in it", "create one with `docker save IMAGE -o FILE`, `ephemera build image`"},
		},
		{
			name: "layout packed with its directory",
			data: tarBytes(t, []file{{"myimage/oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}, {"myimage/index.json", []byte(`{}`)}}),
			want: []string{"index.json is inside the directory myimage/", "tar -C myimage -cf FILE ."},
		},
		{name: "index.json without oci-layout", data: tarBytes(t, []file{{"index.json", []byte(`{"manifests":[]}`)}}), want: []string{"no oci-layout file", `{"imageLayoutVersion":"1.0.0"}`}},
		{name: "truncated inside a file", data: packedData[:700], want: []string{"the archive is truncated: it ends inside"}},
		{name: "truncated between two files", data: saved[:manifestAt], want: []string{"the archive is truncated: it ends after 0123/layer.tar"}},
		{name: "truncated inside a header", data: saved[:manifestAt+100], want: []string{"truncated: it ends after 0123/layer.tar"}},
		{name: "truncated gzip", data: func() []byte { g := gzipBytes(t, packedData); return g[:len(g)/2] }(), want: []string{"truncated"}},
		{name: "docker save, invalid manifest.json", data: tarBytes(t, []file{{"manifest.json", []byte(`[{"Config": `)}}), want: []string{"manifest.json is not valid JSON"}},
		{name: "docker save, missing layer", data: dockerSave(t, "amd64", []string{"app:v1"}, true), want: []string{"manifest.json refers to the layer 0123/layer.tar, which is not in the archive", "save or copy it again"}},
		{name: "docker save by ID", data: dockerSave(t, "amd64", nil, false), want: []string{"has no name (RepoTags is empty)", "docker save app:v1 -o FILE"}},
		{name: "docker save, arm64", data: dockerSave(t, "arm64", []string{"app:v1"}, false), want: []string{"is for linux/arm64, but nodes run linux/amd64", "--platform linux/amd64"}},
		{
			name: "OCI without a name",
			data: ociLayout(t, []map[string]any{amd.desc}, amd.blobs),
			want: []string{"has no name, so containerd would import it without one", image.AnnotationImageName},
		},
		{
			name: "OCI named only by a tag",
			data: ociLayout(t, []map[string]any{named(amd.desc, map[string]string{image.AnnotationRefName: "v1"})}, amd.blobs),
			want: []string{`is named only "v1"`, image.AnnotationImageName},
		},
		{
			name: "OCI name not fully qualified",
			data: ociLayout(t, []map[string]any{withName("app:v1")}, amd.blobs),
			want: []string{`named "app:v1"`, "name it docker.io/library/app:v1"},
		},
		{name: "OCI invalid name", data: ociLayout(t, []map[string]any{withName("Not A Name")}, amd.blobs), want: []string{"not a valid image name"}},
		{
			name: "OCI missing layer blob",
			data: ociLayout(t, []map[string]any{withName("example.com/app:v1")}, amd.blobs[0:1:1]),
			want: []string{"refers to the blob blobs/sha256/", "which is not in the archive"},
		},
		{
			name: "OCI blob of the wrong size",
			data: func() []byte {
				blobs := append([]file{}, amd.blobs...)
				blobs[1] = file{blobs[1].name, append(append([]byte{}, blobs[1].data...), 0)}
				return ociLayout(t, []map[string]any{withName("example.com/app:v1")}, blobs)
			}(),
			want: []string{"bytes, but its manifest says"},
		},
		{
			name: "OCI arm64 only",
			data: ociLayout(t, []map[string]any{armOnlyDesc}, append(append([]file{}, arm.blobs...), file{blobPath(digestOf(armOnlyMan)), armOnlyMan})),
			want: []string{"has no linux/amd64 image (it has linux/arm64)"},
		},
		{
			name: "OCI layout version",
			data: tarBytes(t, []file{{"oci-layout", []byte(`{"imageLayoutVersion":"2.0.0"}`)}, {"index.json", []byte(`{}`)}}),
			want: []string{`unsupported OCI layout version "2.0.0"`},
		},
		{
			name: "OCI empty index",
			data: ociLayout(t, nil, nil),
			want: []string{"index.json lists no image"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeArchive(t, tt.data)
			a, err := image.Inspect(p)
			if err == nil {
				t.Fatalf("Inspect = %+v, want error", a)
			}
			var ae *image.ArchiveError
			if !errors.As(err, &ae) {
				t.Errorf("error %v (%T) is not an *ArchiveError", err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, p+": ") {
				t.Errorf("error %q does not start with the file name", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestInspectDirectoryAndMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := image.Inspect(dir)
	var ae *image.ArchiveError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "is a directory") || !strings.Contains(err.Error(), "tar -C "+dir) {
		t.Errorf("Inspect(dir) = %v, want an *ArchiveError saying to tar the directory", err)
	}
	if _, err := image.Inspect(filepath.Join(dir, "nope.tar")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Inspect(missing) = %v, want ErrNotExist", err)
	}
}

func TestDecompress(t *testing.T) {
	plain := dockerSave(t, "amd64", []string{"app:v1"}, false)
	src := writeArchive(t, gzipBytes(t, plain))
	dst := filepath.Join(t.TempDir(), "plain.tar")
	if err := image.Decompress(src, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Error("Decompress did not give back the plain tar")
	}
	a, err := image.Inspect(dst)
	if err != nil || a.Compression != "" || a.Format != image.FormatDocker {
		t.Errorf("Inspect(decompressed) = %+v, %v; want a plain docker-save tar", a, err)
	}
	if err := image.Decompress(writeArchive(t, plain), filepath.Join(t.TempDir(), "x")); err == nil {
		t.Error("Decompress of a plain tar: want error")
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"app", "docker.io/library/app:latest"},
		{"app:v1", "docker.io/library/app:v1"},
		{"team/app:v1", "docker.io/team/app:v1"},
		{"docker.io/app:v1", "docker.io/library/app:v1"},
		{"index.docker.io/team/app:v1", "docker.io/team/app:v1"},
		{"localhost/ephemera/pause:3.10", "localhost/ephemera/pause:3.10"},
		{"localhost:5000/app", "localhost:5000/app:latest"},
		{"example.com/a/b/c:v1", "example.com/a/b/c:v1"},
		{"example.com/app@sha256:" + strings.Repeat("a", 64), "example.com/app@sha256:" + strings.Repeat("a", 64)},
	}
	for _, tt := range tests {
		got, err := image.Normalize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "App:v1", "a b", "app:"} {
		if got, err := image.Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) = %q, want error", bad, got)
		}
	}
}
