package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ephemera-dev/ephemera/internal/image"
)

// RefNameAnnotation names each image of an exported layout by its full
// reference (containerd's io.containerd.image.name is set too).
const RefNameAnnotation = image.AnnotationRefName

// nsTransport adds ns=HOST to every request that has none: the daemon then
// serves the request from (or stores a push into) its cache for HOST.
type nsTransport struct {
	inner http.RoundTripper
	ns    string
	// push answers HEAD itself with 404: a push into the cache must not
	// ask whether content exists, which the cache would answer by pulling
	// it from the registry.
	push bool
}

func (t *nsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.push && t.ns != "" && r.Method == http.MethodHead {
		if r.Body != nil {
			r.Body.Close()
		}
		return &http.Response{
			Status: "404 Not Found", StatusCode: http.StatusNotFound, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: http.NoBody, Request: r,
		}, nil
	}
	if t.ns == "" || r.URL.Query().Has("ns") {
		return t.inner.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	q := r.URL.Query()
	q.Set("ns", t.ns)
	r.URL.RawQuery = q.Encode()
	return t.inner.RoundTrip(r)
}

// target is where an image lives for the daemon: the local registry (ns
// empty) or the cache of registry ns.
type target struct {
	ns   string // registry host, "" for the local registry
	repo string // repository path as the registry names it
	ref  string // ":tag" or "@sha256:…"
}

// full is the reference an exported image is annotated with.
func (t target) full(d Daemon) string {
	if t.ns == "" {
		return d.LocalHost() + "/" + t.repo + t.ref
	}
	return t.ns + "/" + t.repo + t.ref
}

// daemonRef is the reference to the image at the daemon's address.
func (t target) daemonRef(d Daemon) (name.Reference, error) {
	return name.ParseReference(d.Addr.String()+"/"+t.repo+t.ref, name.Insecure, name.StrictValidation)
}

// options are the remote options to read the target through the daemon.
func (t target) options(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(&nsTransport{inner: daemonTransport, ns: t.ns})}
}

// pushOptions are the remote options to push the target through the daemon.
func (t target) pushOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(&nsTransport{inner: daemonTransport, ns: t.ns, push: true})}
}

// parseTarget classifies an image reference: without a registry host
// (app:v1, team/app:v1), under localhost (localhost:5001/app:v1, any port:
// the name local images go by on any host) or under a loopback address
// with the daemon's port it is the local registry's; any other
// (docker.io/library/nginx:1, 10.1.2.3:5000/app:v1, 127.0.0.1:5000/app
// on another port) is the cache's for that registry. A reference without
// tag or digest means :latest.
func parseTarget(ref string, port uint16) (target, error) {
	if _, err := name.ParseReference(ref); err != nil {
		return target{}, fmt.Errorf("image %q: %w", ref, err)
	}
	var t target
	first, rest, hasSlash := strings.Cut(ref, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost") {
		if isLocalName(first, port) {
			ref = rest
		} else {
			full, err := image.Normalize(ref)
			if err != nil {
				return target{}, fmt.Errorf("image %q: %w", ref, err)
			}
			t.ns, ref, _ = strings.Cut(full, "/")
		}
	}
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		t.repo, t.ref = ref[:i], ref[i:]
	} else if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		t.repo, t.ref = ref[:i], ref[i:]
	} else {
		t.repo, t.ref = ref, ":latest"
	}
	return t, nil
}

// isLocalName reports whether a reference's registry host names the local
// registry.
func isLocalName(host string, port uint16) bool {
	h, p, err := net.SplitHostPort(host)
	if err != nil {
		h, p = host, ""
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	return IsLocalHost(host) && (p == "" || p == strconv.Itoa(int(port)))
}

// ExportOptions tune Export.
type ExportOptions struct {
	// Platform, when set, exports only that platform's image of a
	// multi-platform image (the tag then names that image).
	Platform *v1.Platform
	// Progress receives a line per image.
	Progress io.Writer
}

// Export reads each image through the daemon (the local registry's images,
// and through the cache any other registry's) and writes them to an OCI
// image layout at dir, each annotated with its full reference; an image
// exported before under the same reference is replaced.
func Export(ctx context.Context, d Daemon, dir string, refs []string, opts ExportOptions) error {
	p, err := openLayout(dir)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		t, err := parseTarget(ref, d.Addr.Port())
		if err != nil {
			return err
		}
		r, err := t.daemonRef(d)
		if err != nil {
			return fmt.Errorf("image %q: %w", ref, err)
		}
		full := t.full(d)
		ro := t.options(ctx)
		if opts.Platform != nil {
			ro = append(ro, remote.WithPlatform(*opts.Platform))
		}
		desc, err := remote.Get(r, ro...)
		if err != nil {
			return fmt.Errorf("export %s: %w", full, err)
		}
		ann := layout.WithAnnotations(map[string]string{RefNameAnnotation: full, image.AnnotationImageName: full})
		matcher := match.Annotation(RefNameAnnotation, full)
		var size int64
		if desc.MediaType.IsIndex() && opts.Platform == nil {
			idx, err := desc.ImageIndex()
			if err != nil {
				return fmt.Errorf("export %s: %w", full, err)
			}
			if err := p.ReplaceIndex(idx, matcher, ann); err != nil {
				return fmt.Errorf("export %s: %w", full, err)
			}
			size = indexSize(idx)
		} else {
			img, err := desc.Image()
			if err != nil {
				return fmt.Errorf("export %s: %w", full, err)
			}
			if err := p.ReplaceImage(img, matcher, ann); err != nil {
				return fmt.Errorf("export %s: %w", full, err)
			}
			size = imageSize(img)
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "Exported %s (%s, %s)\n", full, shortDigest(desc.Digest), FormatBytes(size))
		}
	}
	return nil
}

func openLayout(dir string) (layout.Path, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		p, err := layout.FromPath(dir)
		if err != nil {
			return "", fmt.Errorf("image layout %s: %w", dir, err)
		}
		return p, nil
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return "", fmt.Errorf("%s is neither empty nor an OCI image layout (no index.json): give a new or empty directory", dir)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", fmt.Errorf("image layout %s: %w", dir, err)
	}
	return p, nil
}

// Import pushes every named image of the OCI image layout at dir through
// the daemon: images of the local registry (localhost:PORT/…, any port)
// into it, others into the cache as if just pulled from their registry. It
// returns the references imported; an image that fails does not stop the
// others (the error names every failure).
func Import(ctx context.Context, d Daemon, dir string, progress io.Writer) ([]string, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is not an OCI image layout (no index.json): give the directory 'ephemera registry export --dir' wrote", dir)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("image layout %s: %w", dir, err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("image layout %s: %w", dir, err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("image layout %s: %w", dir, err)
	}
	var done []string
	var errs []error
	for _, desc := range im.Manifests {
		full := desc.Annotations[RefNameAnnotation]
		if full == "" || !strings.ContainsAny(full, "/:@") {
			full = desc.Annotations[image.AnnotationImageName]
		}
		if full == "" {
			if progress != nil {
				fmt.Fprintf(progress, "Skipped %s: it has no %s annotation\n", shortDigest(desc.Digest), RefNameAnnotation)
			}
			continue
		}
		name, size, err := importOne(ctx, d, ii, desc, full)
		if err != nil {
			errs = append(errs, fmt.Errorf("import %s: %w", full, err))
			if progress != nil {
				fmt.Fprintf(progress, "Failed to import %s: %v\n", full, err)
			}
			continue
		}
		done = append(done, name)
		if progress != nil {
			where := "into the cache"
			if IsLocalHost(strings.SplitN(name, "/", 2)[0]) {
				where = "into the local registry"
			}
			fmt.Fprintf(progress, "Imported %s %s (%s, %s)\n", name, where, shortDigest(desc.Digest), FormatBytes(size))
		}
	}
	return done, errors.Join(errs...)
}

// importOne pushes one image or index of the layout through the daemon.
func importOne(ctx context.Context, d Daemon, ii v1.ImageIndex, desc v1.Descriptor, full string) (string, int64, error) {
	t, err := parseTarget(full, d.Addr.Port())
	if err != nil {
		return "", 0, err
	}
	r, err := t.daemonRef(d)
	if err != nil {
		return "", 0, err
	}
	if desc.MediaType.IsIndex() {
		idx, err := ii.ImageIndex(desc.Digest)
		if err == nil {
			err = remote.WriteIndex(r, idx, t.pushOptions(ctx)...)
		}
		return t.full(d), indexSize(idx), err
	}
	img, err := ii.Image(desc.Digest)
	if err == nil {
		err = remote.Write(r, img, t.pushOptions(ctx)...)
	}
	if err != nil {
		return "", 0, err
	}
	return t.full(d), imageSize(img), nil
}

// LocalName is the local registry's repository and tag for an image name:
// the name without its registry host (and without docker.io's library/),
// :latest when it has no tag. example.com/team/app:v1 is team/app:v1,
// localhost:5001/app:v1 is app:v1.
func LocalName(ref string) (string, error) {
	t, err := parseTarget(ref, 0)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(t.ref, "@") {
		return "", fmt.Errorf("image %q has a digest, not a tag: give a NAME:TAG", ref)
	}
	repo := t.repo
	if t.ns == "docker.io" {
		repo = strings.TrimPrefix(repo, "library/")
	}
	return repo + t.ref, nil
}

// PushArchive pushes the images of a `docker save` archive (what `ephemera
// build image -o` writes) to the daemon's local registry and returns their
// names there, localhost:PORT/NAME:TAG. With tag empty every image goes by
// its own tags (see LocalName); with tag set the archive must hold one
// image, pushed as tag.
func PushArchive(ctx context.Context, d Daemon, path, tag string) ([]string, error) {
	a, err := image.Inspect(path)
	if err != nil {
		return nil, err
	}
	if a.Format != image.FormatDocker {
		return nil, fmt.Errorf("%s is an %s archive: push image takes a 'docker save' archive (like 'ephemera build image -o' writes)", path, a.Format)
	}
	if a.Compression == image.CompressionGzip {
		tmp, err := os.MkdirTemp("", "ephemera-push-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		plain := filepath.Join(tmp, "image.tar")
		if err := image.Decompress(path, plain); err != nil {
			return nil, err
		}
		path = plain
	}
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("%s: push image takes a 'docker save' archive (like 'ephemera build image -o' writes): %w", path, err)
	}
	type job struct {
		src  *name.Tag // nil: the only image
		dest string
	}
	var jobs []job
	if tag != "" {
		if len(m) != 1 {
			return nil, fmt.Errorf("%s holds %d images; --tag names one: leave it out to push each by its own tag", path, len(m))
		}
		dest, err := LocalName(tag)
		if err != nil {
			return nil, fmt.Errorf("--tag: %w", err)
		}
		jobs = append(jobs, job{dest: dest})
	} else {
		for _, e := range m {
			for _, rt := range e.RepoTags {
				src, err := name.NewTag(rt)
				if err != nil {
					return nil, fmt.Errorf("%s: tag %q: %w", path, rt, err)
				}
				dest, err := LocalName(rt)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				jobs = append(jobs, job{src: &src, dest: dest})
			}
		}
		if len(jobs) == 0 {
			return nil, fmt.Errorf("%s has no tagged image: give --tag NAME:TAG", path)
		}
	}
	var out []string
	for _, j := range jobs {
		img, err := tarball.Image(opener, j.src)
		if err != nil {
			return out, fmt.Errorf("%s: %w", path, err)
		}
		t, _ := parseTarget(j.dest, d.Addr.Port())
		r, err := t.daemonRef(d)
		if err != nil {
			return out, err
		}
		if err := remote.Write(r, img, t.pushOptions(ctx)...); err != nil {
			return out, fmt.Errorf("push %s: %w", t.full(d), err)
		}
		out = append(out, t.full(d))
	}
	return out, nil
}

func imageSize(img v1.Image) int64 {
	m, err := img.Manifest()
	if err != nil {
		return 0
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

func indexSize(idx v1.ImageIndex) int64 {
	im, err := idx.IndexManifest()
	if err != nil {
		return 0
	}
	var n int64
	for _, d := range im.Manifests {
		if img, err := idx.Image(d.Digest); err == nil && !d.MediaType.IsIndex() {
			n += imageSize(img)
		}
	}
	return n
}

func shortDigest(h v1.Hash) string {
	s := h.String()
	if len(s) > 19 {
		return s[:19]
	}
	return s
}
