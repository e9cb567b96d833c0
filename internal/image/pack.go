package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Platform of every image Pack makes: the nodes ephemera runs.
const (
	OS           = "linux"
	Architecture = "amd64"
)

// PackOptions describe a single-layer image made of host files.
type PackOptions struct {
	// Ref names the image, like "localhost/ephemera/pause:3.10"; without a
	// tag it is ":latest". The archive records it as written, and
	// containerd normalises it on import (hello:v1 becomes
	// docker.io/library/hello:v1).
	Ref string
	// Files maps a path in the image, like "/pause", to the host file that
	// is copied there with its permission bits. Parent directories are
	// created with mode 0755.
	Files map[string]string
	// Entrypoint is the image's entrypoint, like ["/pause"].
	Entrypoint []string
	// Cmd is the image's default arguments.
	Cmd []string
	// Env holds KEY=value pairs for the image's environment.
	Env []string
	// User is who the entrypoint runs as, like "65535:65535"; empty is root.
	User string
	// Output is the archive to write, in `docker save` format.
	Output string
}

// epoch is the time every file and the image carry, so that packing the same
// files twice gives the same image digest.
var epoch = time.Unix(0, 0).UTC()

// Pack writes a single-layer linux/amd64 image in `docker save` format to
// opts.Output, so that `ctr -n k8s.io images import FILE` (and `docker load`)
// import it under opts.Ref. It writes a temporary file next to Output and
// renames it into place, so a failure never leaves a partial archive.
func Pack(ctx context.Context, opts PackOptions) error {
	if opts.Output == "" {
		return errors.New("pack image: no output file")
	}
	tag, err := name.NewTag(opts.Ref)
	if err != nil {
		return fmt.Errorf("pack image: invalid image name %q (want like example.com/app:v1): %w", opts.Ref, err)
	}
	if len(opts.Files) == 0 {
		return fmt.Errorf("pack image %s: no files", opts.Ref)
	}
	files, err := layerFiles(opts.Files)
	if err != nil {
		return fmt.Errorf("pack image %s: %w", opts.Ref, err)
	}
	dir, base := filepath.Split(opts.Output)
	if dir == "" {
		dir = "."
	}

	layerTmp, err := os.CreateTemp(dir, "."+base+".layer-tmp-")
	if err != nil {
		return fmt.Errorf("pack image %s: %w", opts.Ref, err)
	}
	defer os.Remove(layerTmp.Name())
	err = writeLayer(ctx, layerTmp, files)
	if cerr := layerTmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pack image %s: %w", opts.Ref, err)
	}

	img, err := buildImage(layerTmp.Name(), opts)
	if err != nil {
		return fmt.Errorf("pack image %s: %w", opts.Ref, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	out, err := os.CreateTemp(dir, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("pack image %s: %w", opts.Ref, err)
	}
	defer os.Remove(out.Name()) // fails harmlessly once renamed
	err = tarball.Write(tag, img, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = os.Chmod(out.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(out.Name(), opts.Output)
	}
	if err != nil {
		return fmt.Errorf("pack image %s into %s: %w", opts.Ref, opts.Output, err)
	}
	return nil
}

// layerFile is one regular file of the layer.
type layerFile struct {
	name string // path in the image, without the leading slash
	host string
	mode os.FileMode
	size int64
}

// layerFiles checks the files and returns them sorted by image path.
func layerFiles(m map[string]string) ([]layerFile, error) {
	out := make([]layerFile, 0, len(m))
	for imgPath, host := range m {
		clean := path.Clean("/" + imgPath)
		if !path.IsAbs(imgPath) || clean != imgPath || clean == "/" {
			return nil, fmt.Errorf("image path %q: want an absolute, clean file path like /app", imgPath)
		}
		fi, err := os.Stat(host)
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", host)
		}
		out = append(out, layerFile{name: clean[1:], host: host, mode: fi.Mode().Perm(), size: fi.Size()})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out, nil
}

// writeLayer writes the uncompressed layer: every parent directory once,
// then each file, all owned by root and dated at the epoch.
func writeLayer(ctx context.Context, w io.Writer, files []layerFile) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		var parents []string
		for d := path.Dir(f.name); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: parents[i] + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
		if err := addFile(tw, f); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addFile(tw *tar.Writer, f layerFile) error {
	in, err := os.Open(f.host)
	if err != nil {
		return err
	}
	defer in.Close()
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: int64(f.mode), Size: f.size, ModTime: epoch, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if n, err := io.Copy(tw, in); err != nil {
		return fmt.Errorf("copy %s: %w", f.host, err)
	} else if n != f.size {
		return fmt.Errorf("copy %s: it changed size while being copied", f.host)
	}
	return nil
}

func buildImage(layerPath string, opts PackOptions) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(layerPath, tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "ephemera build image", Comment: strings.Join(sortedKeys(opts.Files), " ")},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = OS, Architecture
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = opts.Entrypoint
	cf.Config.Cmd = opts.Cmd
	cf.Config.Env = opts.Env
	cf.Config.User = opts.User
	return mutate.ConfigFile(img, cf)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
