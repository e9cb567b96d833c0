// Package image is the command that packs a static binary into an image archive.
package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	pushimage "github.com/ephemera-dev/ephemera/internal/cli/push/image"
	"github.com/ephemera-dev/ephemera/internal/image"
)

type options struct {
	binary     string
	tag        string
	output     string
	path       string
	entrypoint []string
	args       []string
	env        []string
	user       string
	files      []string
	push       bool
}

// NewCommand returns the build image command.
func NewCommand(e *env.Env) *cobra.Command {
	opts := &options{}
	cmd := &cobra.Command{
		Use:   "image --from-binary FILE --tag NAME -o ARCHIVE",
		Short: "Pack a static Linux binary into an image archive, without Docker",
		Long: `Pack a statically linked linux/amd64 program into a one-layer container image
and write it as an image archive (the format of 'docker save'), ready for
'ephemera load image'. No Docker, daemon or registry is involved, so CI jobs
without Docker can build the images their tests deploy.

The image holds just the binary (at /NAME, or --path) and the files you --add;
there is no shell and no C library. So the program must be statically linked:
for Go, build it with CGO_ENABLED=0. A dynamically linked program is refused.

The entrypoint is the binary itself unless --entrypoint says otherwise, and
--arg adds default arguments (the pod's args replace them, as with Docker's
CMD). The image runs as root unless --user names another user.

Pods then use the image by its tag. Give it a tag other than latest, so the
kubelet uses the loaded copy instead of pulling (or set imagePullPolicy:
Never).

With --push the image also goes to the host's local registry (see 'ephemera
push image'), and its name there, localhost:PORT/NAME:TAG, is printed: every
real-node cluster on the host pulls it by that name. -o is optional then.`,
		Example: `  # Build a Go program and pack it
  CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -o hello ./cmd/hello
  ephemera build image --from-binary ./hello --tag example.com/hello:v1 -o hello.tar

  # Load it into a cluster and run it
  ephemera load image hello.tar --cluster demo
  kubectl run hello --image=example.com/hello:v1

  # Listen on 8080 as nobody, with a config file
  ephemera build image --from-binary ./server --tag example.com/server:v1 -o server.tar \
    --arg=--listen=:8080 --user 65534:65534 --add ./config.yaml:/etc/server/config.yaml

  # Push it to the local registry for every cluster on the host
  ephemera build image --from-binary ./hello --tag hello:v1 --push   # localhost:5001/hello:v1
  kubectl run hello --image=localhost:5001/hello:v1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), e, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.binary, "from-binary", "", "static linux/amd64 program to pack (required)")
	f.StringVarP(&opts.tag, "tag", "t", "", "image name, like example.com/app:v1 (required)")
	f.StringVarP(&opts.output, "output", "o", "", "image archive to write, like app.tar (required unless --push)")
	f.StringVar(&opts.path, "path", "", "where the binary goes in the image (default /NAME of the binary)")
	f.StringArrayVar(&opts.entrypoint, "entrypoint", nil, "entrypoint argv, one flag per word (default the binary)")
	f.StringArrayVar(&opts.args, "arg", nil, "default argument, one flag per word; pods' args replace them")
	f.StringArrayVar(&opts.env, "env", nil, "environment variable KEY=VALUE (repeat for several)")
	f.StringVar(&opts.user, "user", "", "user[:group] the program runs as, like 65534:65534 (default root)")
	f.StringArrayVar(&opts.files, "add", nil, "extra file HOST:IMAGEPATH, like ./app.yaml:/etc/app.yaml (repeat for several)")
	f.BoolVar(&opts.push, "push", false, "also push the image to the host's local registry and print its name there (localhost:PORT/NAME:TAG)")
	return cmd
}

func run(ctx context.Context, e *env.Env, opts *options) error {
	var missing []string
	for _, f := range []struct{ name, value string }{{"--from-binary", opts.binary}, {"--tag", opts.tag}, {"-o", opts.output}} {
		if f.value == "" && (f.name != "-o" || !opts.push) {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: name the binary, the image and the archive, like: ephemera build image --from-binary ./hello --tag example.com/hello:v1 -o hello.tar", strings.Join(missing, ", "))
	}
	full, err := image.Normalize(opts.tag)
	if err != nil {
		return fmt.Errorf("--tag %q is not a valid image name (want like example.com/app:v1, lower-case): %w", opts.tag, err)
	}
	if err := image.CheckStaticBinary(opts.binary); err != nil {
		return err
	}
	imgPath := opts.path
	if imgPath == "" {
		imgPath = "/" + filepath.Base(opts.binary)
	}
	if !path.IsAbs(imgPath) {
		return fmt.Errorf("--path %q must be absolute, like /app", imgPath)
	}
	files := map[string]string{imgPath: opts.binary}
	for _, a := range opts.files {
		host, dst, ok := strings.Cut(a, ":")
		if !ok || host == "" || !path.IsAbs(dst) {
			return fmt.Errorf("--add %q: want HOST:IMAGEPATH with an absolute image path, like ./app.yaml:/etc/app.yaml", a)
		}
		if _, dup := files[dst]; dup {
			return fmt.Errorf("--add %q: the image already has a file at %s", a, dst)
		}
		files[dst] = host
	}
	for _, kv := range opts.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
	}
	entrypoint := opts.entrypoint
	if len(entrypoint) == 0 {
		entrypoint = []string{imgPath}
	}
	kept := opts.output != ""
	if opts.push && !kept {
		tmp, err := os.MkdirTemp("", "ephemera-build-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		opts.output = filepath.Join(tmp, "image.tar")
		defer func() { opts.output = "" }()
	}
	if fi, err := os.Stat(opts.output); err == nil && fi.IsDir() {
		return fmt.Errorf("-o %s is a directory; name the archive file, like %s", opts.output, filepath.Join(opts.output, filepath.Base(opts.binary)+".tar"))
	}
	err = image.Pack(ctx, image.PackOptions{
		Ref:        opts.tag,
		Files:      files,
		Entrypoint: entrypoint,
		Cmd:        opts.args,
		Env:        opts.env,
		User:       opts.user,
		Output:     opts.output,
	})
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("write %s (does its directory exist?): %w", opts.output, err)
	}
	if err != nil {
		return err
	}
	size := "?"
	if fi, err := os.Stat(opts.output); err == nil {
		size = fmt.Sprintf("%.1f MB", float64(fi.Size())/1e6)
	}
	named := opts.tag
	if full != opts.tag {
		named += " (" + full + ")"
	}
	if opts.push {
		if kept {
			fmt.Fprintf(e.ErrOut, "Built image %s into %s (%s)\n", named, opts.output, size)
		} else {
			fmt.Fprintf(e.ErrOut, "Built image %s (%s)\n", named, size)
		}
		names, err := pushimage.Push(ctx, e, opts.output, "")
		for _, n := range names {
			fmt.Fprintln(e.Out, n)
		}
		return err
	}
	fmt.Fprintf(e.ErrOut, "Built image %s into %s (%s)\n", named, opts.output, size)
	fmt.Fprintf(e.ErrOut, "Load it into a cluster: ephemera load image %s --cluster NAME\n", opts.output)
	return nil
}
