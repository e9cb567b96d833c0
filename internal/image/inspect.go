package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Format is the layout of an image archive.
type Format string

// Formats Inspect recognises; both are what `ctr images import` takes.
const (
	// FormatDocker is a `docker save` tarball: manifest.json naming each
	// image's config and layers, with its names in RepoTags.
	FormatDocker Format = "docker-save"
	// FormatOCI is an OCI image layout in a tar: oci-layout, index.json and
	// blobs/<algorithm>/<hex>, with each image's name in an annotation.
	FormatOCI Format = "oci-layout"
)

// Compression a tar may be wrapped in.
const (
	// CompressionGzip marks a gzip-compressed tar, like `docker save | gzip`.
	// containerd's import wants a plain tar: Decompress it first.
	CompressionGzip = "gzip"
)

// Annotations that name an image in an OCI layout's index.json.
const (
	// AnnotationImageName is containerd's full image name, which
	// `ctr images import` uses first.
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationRefName is the OCI reference name; containerd uses it as the
	// name when it is a full reference (holds '/', ':' or '@').
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// Archive is what Inspect found in an image archive.
type Archive struct {
	// Path is the archive file.
	Path string
	// Format is the archive's layout.
	Format Format
	// Compression is CompressionGzip when the tar is compressed, else empty.
	Compression string
	// Names are the images' names as containerd stores them on import
	// (docker-save names normalised, like docker.io/library/app:v1), sorted.
	Names []string
}

// ArchiveError says what is wrong with an image archive and how to fix it.
// Inspect returns it for every problem with the file's content.
type ArchiveError struct {
	// Path is the archive file.
	Path string
	// Problem says what is wrong, like "the file is empty".
	Problem string
	// Fix says what to do about it; may be empty.
	Fix string
	// Err is the underlying cause, if any.
	Err error
}

// Error implements error: "PATH: PROBLEM[: ERR][; FIX]".
func (e *ArchiveError) Error() string {
	msg := e.Path + ": " + e.Problem
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

// Unwrap returns the cause.
func (e *ArchiveError) Unwrap() error { return e.Err }

// createHint says how to make a valid archive.
const createHint = "create one with `docker save IMAGE -o FILE`, `ephemera build image`, or a tool that writes an OCI layout"

// incompleteHint is the fix for an archive that lacks part of an image.
const incompleteHint = "the archive is incomplete or damaged: save or copy it again"

// maxJSON bounds the size of a JSON file Inspect reads (index, manifest,
// config); layers are never read into memory.
const maxJSON = 4 << 20

// Inspect checks that path is an image archive that `ctr images import`
// accepts, without importing anything: a tar (plain or gzip-compressed)
// holding either an OCI image layout or a `docker save` tarball, in which
// every image has a name, the blobs its manifests refer to, and a
// linux/amd64 variant. Problems with the file come back as *ArchiveError.
func Inspect(path string) (*Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inspect image archive: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("inspect image archive: %w", err)
	}
	fail := func(problem, fix string, err error) (*Archive, error) {
		return nil, &ArchiveError{Path: path, Problem: problem, Fix: fix, Err: err}
	}
	if fi.IsDir() {
		return fail("is a directory, not an archive", "to load an OCI image layout directory, pack its contents into a tar: tar -C "+path+" -cf image.tar .", nil)
	}
	if fi.Size() == 0 {
		return fail("the file is empty", createHint, nil)
	}

	a := &Archive{Path: path}
	br := bufio.NewReader(f)
	var r io.Reader = br
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fail("the gzip data is corrupt", incompleteHint, err)
		}
		r, a.Compression = gz, CompressionGzip
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return fail("is compressed with zstd, which is not supported", "decompress it first: zstd -d "+path, nil)
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return fail("is compressed with xz, which is not supported", "decompress it first: xz -dk "+path, nil)
	case bytes.HasPrefix(magic, []byte("BZh")):
		return fail("is compressed with bzip2, which is not supported", "decompress it first: bzip2 -dk "+path, nil)
	}

	s, err := scan(r)
	if err != nil {
		var se *scanError
		if errors.As(err, &se) {
			return fail(se.problem, se.fix, se.err)
		}
		return nil, fmt.Errorf("inspect image archive %s: %w", path, err)
	}
	if err := s.check(a); err != nil {
		var pe *problem
		if !errors.As(err, &pe) {
			return nil, err
		}
		if s.unterminated {
			// Most likely the file was cut off between two entries.
			return fail("the archive is truncated: it ends after "+s.last+" without the end of the tar", incompleteHint, nil)
		}
		return fail(pe.problem, pe.fix, nil)
	}
	sort.Strings(a.Names)
	return a, nil
}

// Decompress writes the plain tar inside the gzip-compressed archive src to
// dst, for tools that want a plain tar.
func Decompress(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	gz, err := gzip.NewReader(bufio.NewReader(in))
	if err != nil {
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, gz); err != nil {
		out.Close()
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	return out.Close()
}

// entry is one file of the archive; data is kept for small JSON files only.
type entry struct {
	size int64
	data []byte
}

// contents is what scan found in the tar.
type contents struct {
	files map[string]*entry
	// last is the name of the last entry.
	last string
	// unterminated is set when the tar lacks its end-of-archive blocks,
	// as a file cut off between two entries does.
	unterminated bool
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type scanError struct {
	problem, fix string
	err          error
}

func (e *scanError) Error() string { return e.problem }

// problem is a defect of the archive's content found by check.
type problem struct{ problem, fix string }

func (p *problem) Error() string { return p.problem }

func problemf(fix, format string, args ...any) error {
	return &problem{problem: fmt.Sprintf(format, args...), fix: fix}
}

// scan reads the whole tar once, which also proves it is not truncated,
// keeping every small JSON file.
func scan(r io.Reader) (*contents, error) {
	c := &contents{files: map[string]*entry{}}
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	var end int64 // where the last entry's data ends
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return nil, &scanError{problem: "the tar archive holds no files", fix: createHint}
			}
			// A tar ends with zero blocks; archive/tar accepts one without.
			c.unterminated = cr.n == end
			return c, nil
		}
		if err != nil {
			return nil, readError(err, n, "after "+c.last)
		}
		end = cr.n + (hdr.Size+511)/512*512
		name := cleanName(hdr.Name)
		c.last = name
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
		default:
			continue
		}
		e := &entry{size: hdr.Size}
		if hdr.Typeflag == tar.TypeReg && hdr.Size <= maxJSON {
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, readError(err, n+1, "inside "+name)
			}
			if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
				e.data = data
			}
		}
		c.files[name] = e
	}
}

// readError explains a failure to read the tar after n entries; where says
// where, like "inside blobs/sha256/…".
func readError(err error, n int, where string) error {
	var corrupt flate.CorruptInputError
	gzErr := errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.As(err, &corrupt)
	switch {
	case gzErr:
		return &scanError{problem: "the gzip data is corrupt", fix: incompleteHint, err: err}
	case n == 0:
		return &scanError{problem: "not a tar archive", fix: createHint, err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &scanError{problem: "the archive is truncated: it ends " + where, fix: incompleteHint}
	default:
		return &scanError{problem: "the archive is damaged " + where, fix: incompleteHint, err: err}
	}
}

func cleanName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

// check finds the archive's format and images and checks each image is
// complete and named.
func (c *contents) check(a *Archive) error {
	switch {
	case c.files["oci-layout"] != nil:
		a.Format = FormatOCI
		return c.checkOCI(a)
	case c.files["manifest.json"] != nil:
		a.Format = FormatDocker
		return c.checkDocker(a)
	case c.files["index.json"] != nil:
		return problemf(`add a file oci-layout holding {"imageLayoutVersion":"1.0.0"} next to index.json, as the OCI image layout requires`,
			"has index.json but no oci-layout file, so containerd would not recognise it as an OCI image layout")
	}
	for n := range c.files {
		if base := path.Base(n); base == "index.json" || base == "manifest.json" {
			dir := path.Dir(n)
			return problemf(fmt.Sprintf("pack the contents of that directory, not the directory itself: tar -C %s -cf FILE .", dir),
				"not an image archive at its top level: %s is inside the directory %s/", base, dir)
		}
	}
	return problemf(createHint, "not an image archive: no index.json (OCI layout) or manifest.json (docker save) in it")
}

// readJSON decodes the JSON file name of the archive into v.
func (c *contents) readJSON(name, what string, v any) error {
	e := c.files[name]
	if e == nil {
		return problemf(incompleteHint, "%s %s is not in the archive", what, name)
	}
	if e.data == nil {
		return problemf(incompleteHint, "%s %s is not JSON", what, name)
	}
	if err := json.Unmarshal(e.data, v); err != nil {
		return problemf(incompleteHint, "%s %s is not valid JSON: %v", what, name, err)
	}
	return nil
}

// dockerManifest is one entry of a docker-save manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (c *contents) checkDocker(a *Archive) error {
	var ms []dockerManifest
	if err := c.readJSON("manifest.json", "the docker-save index", &ms); err != nil {
		return err
	}
	if len(ms) == 0 {
		return problemf(createHint, "manifest.json lists no image")
	}
	for _, m := range ms {
		if m.Config == "" {
			return problemf(incompleteHint, "manifest.json has an image without a Config")
		}
		cfgName := cleanName(m.Config)
		for _, l := range m.Layers {
			if c.files[cleanName(l)] == nil {
				return problemf(incompleteHint, "manifest.json refers to the layer %s, which is not in the archive", l)
			}
		}
		if err := c.checkConfig(cfgName, m.Config); err != nil {
			return err
		}
		if len(m.RepoTags) == 0 {
			return problemf("save the image by name, like `docker save app:v1 -o FILE` (not by image ID), or build it with `ephemera build image --tag`",
				"the image with config %s has no name (RepoTags is empty), so it could not be used by name", m.Config)
		}
		for _, t := range m.RepoTags {
			n, err := Normalize(t)
			if err != nil {
				return problemf("", "manifest.json names an image %q, which is not a valid image name: %v", t, err)
			}
			a.Names = appendNew(a.Names, n)
		}
	}
	return nil
}

// checkConfig checks an image config blob and that it is for linux/amd64.
func (c *contents) checkConfig(name, what string) error {
	var cfg struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	}
	if err := c.readJSON(name, "the image config", &cfg); err != nil {
		return err
	}
	if (cfg.OS != "" && cfg.OS != OS) || (cfg.Architecture != "" && cfg.Architecture != Architecture) {
		return problemf("build or pull the image for linux/amd64 (like `docker build --platform linux/amd64`)",
			"the image with config %s is for %s/%s, but nodes run %s/%s", what, cfg.OS, cfg.Architecture, OS, Architecture)
	}
	return nil
}

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform,omitempty"`
}

// ociIndex is an OCI image index or a Docker manifest list.
type ociIndex struct {
	Manifests []descriptor `json:"manifests"`
}

// ociManifest is an OCI or Docker v2 image manifest.
type ociManifest struct {
	MediaType string       `json:"mediaType"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

const namingHint = "give each image a full name: set the annotation " + AnnotationImageName +
	" (or " + AnnotationRefName + ") of its entry in index.json to a name like docker.io/library/app:v1, or save it with `docker save app:v1 -o FILE`"

func (c *contents) checkOCI(a *Archive) error {
	var layout struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := c.readJSON("oci-layout", "the layout marker", &layout); err != nil {
		return err
	}
	if layout.Version != "1.0.0" {
		return problemf(`the file oci-layout must hold {"imageLayoutVersion":"1.0.0"}`, "unsupported OCI layout version %q", layout.Version)
	}
	var idx ociIndex
	if err := c.readJSON("index.json", "the OCI index", &idx); err != nil {
		return err
	}
	if len(idx.Manifests) == 0 {
		return problemf(createHint, "index.json lists no image")
	}
	for _, d := range idx.Manifests {
		n := d.Annotations[AnnotationImageName]
		if n == "" {
			ref := d.Annotations[AnnotationRefName]
			switch {
			case ref == "":
				return problemf(namingHint, "the image %s in index.json has no name, so containerd would import it without one", d.Digest)
			case !strings.ContainsAny(ref, "/:@"):
				return problemf(namingHint, "the image %s in index.json is named only %q (%s holds just a tag), so containerd would import it under a made-up name", d.Digest, ref, AnnotationRefName)
			}
			n = ref
		}
		norm, err := Normalize(n)
		if err != nil {
			return problemf(namingHint, "the image %s in index.json is named %q, which is not a valid image name: %v", d.Digest, n, err)
		}
		if norm != n {
			return problemf(fmt.Sprintf("name it %s", norm),
				"the image %s in index.json is named %q: containerd keeps OCI names as written, and pods asking for %q look for %s", d.Digest, n, n, norm)
		}
		if err := c.checkDescriptor(d, 0); err != nil {
			return err
		}
		a.Names = appendNew(a.Names, n)
	}
	return nil
}

// blobName returns the layout path of a blob.
func blobName(digest string) (string, bool) {
	alg, hex, ok := strings.Cut(digest, ":")
	if !ok || alg == "" || hex == "" || strings.ContainsAny(digest, "/\\") {
		return "", false
	}
	return "blobs/" + alg + "/" + hex, true
}

// checkDescriptor checks that the blob d refers to is in the archive with
// the right size and, for an index or manifest, everything it refers to.
func (c *contents) checkDescriptor(d descriptor, depth int) error {
	name, ok := blobName(d.Digest)
	if !ok {
		return problemf(incompleteHint, "invalid digest %q in the archive's manifests", d.Digest)
	}
	e := c.files[name]
	if e == nil {
		return problemf(incompleteHint, "a manifest refers to the blob %s, which is not in the archive", name)
	}
	if d.Size > 0 && e.size != d.Size {
		return problemf(incompleteHint, "the blob %s is %d bytes, but its manifest says %d", name, e.size, d.Size)
	}
	switch d.MediaType {
	case "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
		"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json":
	default:
		return nil // a config or layer: present is enough
	}
	if depth > 4 {
		return problemf(incompleteHint, "indexes nest too deep at %s", name)
	}
	var m ociManifest
	if err := c.readJSON(name, "the manifest", &m); err != nil {
		return err
	}
	if len(m.Manifests) > 0 {
		var platforms []string
		for _, sub := range m.Manifests {
			p := sub.Platform
			if p == nil || (p.OS == OS && p.Architecture == Architecture) {
				return c.checkDescriptor(sub, depth+1)
			}
			platforms = append(platforms, p.OS+"/"+p.Architecture)
		}
		return problemf("build or pull the image for linux/amd64 (like `docker build --platform linux/amd64`)",
			"the image index %s has no linux/amd64 image (it has %s)", name, strings.Join(platforms, ", "))
	}
	if m.Config.Digest == "" {
		return problemf(incompleteHint, "the manifest %s names no config", name)
	}
	if err := c.checkDescriptor(m.Config, depth+1); err != nil {
		return err
	}
	cfgName, _ := blobName(m.Config.Digest)
	if err := c.checkConfig(cfgName, cfgName); err != nil {
		return err
	}
	for _, l := range m.Layers {
		if err := c.checkDescriptor(l, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
