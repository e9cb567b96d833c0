package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/ephemera-dev/ephemera/internal/exec"
	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/image"
	"github.com/ephemera-dev/ephemera/internal/progress"
)

// CoreDNSVersion is the cluster DNS server release built with every
// installation, from the Go module proxy.
const CoreDNSVersion = "v1.15.0"

// Images every installation holds, as archives that containerd imports
// (see Installation.Image).
const (
	// PauseImage is the pod sandbox image: ephemera's pause program.
	PauseImage = "pause"
	// CoreDNSImage is the cluster DNS server.
	CoreDNSImage = "coredns"
)

// Image names under which the archives import.
const (
	// PauseImageRef names the pause image; a node's containerd uses it as
	// its sandbox image.
	PauseImageRef = "localhost/ephemera/pause:3.10"
	// CoreDNSImageRef names the CoreDNS image. Its entrypoint is /coredns;
	// give it -conf /path/to/Corefile.
	CoreDNSImageRef = "localhost/ephemera/coredns:" + CoreDNSVersion
)

// Images lists the images of an installation.
var Images = []string{PauseImage, CoreDNSImage}

// CoreDNSPlugins are the plugins built into CoreDNS, in CoreDNS's own
// execution order (core/dnsserver/zdirectives.go); a Corefile may use these
// and no others.
var CoreDNSPlugins = []string{"reload", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes", "loop", "forward"}

// tool is a program built once per cache into <cache>/tools/<dir> and shared
// by every version.
type tool struct {
	// name names the lock and temporary dirs, like "kwok".
	name string
	// dir is the finished dir under tools/, named after what it holds.
	dir string
	// files must all exist in a finished dir.
	files []string
	// title is the progress step.
	title string
	// build fills tmp with files.
	build func(ctx context.Context, p progress.Reporter, tmp string) error
}

// ensureTool builds t unless it is built and returns its dir. A lock
// serialises installs of different versions, which all need it; the build
// happens in a temporary dir renamed into place when complete, and a dir
// lacking any of t.files is a leftover that is rebuilt.
func (in *Installer) ensureTool(ctx context.Context, t tool) (string, error) {
	tools := filepath.Join(in.Cache.Dir, "tools")
	dir := filepath.Join(tools, t.dir)
	if err := os.MkdirAll(tools, 0o755); err != nil {
		return "", err
	}
	lock, err := flock.Acquire(ctx, filepath.Join(tools, "."+t.name+".lock"))
	if err != nil {
		return "", fmt.Errorf("wait for another %s build: %w", t.name, err)
	}
	defer lock.Unlock()
	if allExist(dir, t.files) {
		return dir, nil
	}
	removeStale(tools, "."+t.name+"-tmp-")
	err = in.step(t.title, func(p progress.Reporter) error {
		tmp, err := os.MkdirTemp(tools, "."+t.name+"-tmp-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if err := t.build(ctx, p, tmp); err != nil {
			return err
		}
		if !allExist(tmp, t.files) {
			return fmt.Errorf("build %s: made none of %v", t.name, t.files)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.Rename(tmp, dir); err != nil {
			return fmt.Errorf("install %s: %w", t.name, err)
		}
		return nil
	})
	return dir, err
}

func allExist(dir string, files []string) bool {
	for _, f := range files {
		if !fileExists(filepath.Join(dir, f)) {
			return false
		}
	}
	return true
}

// imageFile is the archive name of an image.
func imageFile(name string) string { return name + ".tar" }

// toolBuildEnv is the environment for building a static linux/amd64 tool
// outside any module of the user's.
func toolBuildEnv() []string {
	return append(os.Environ(), "CGO_ENABLED=0", "GOOS="+image.OS, "GOARCH="+image.Architecture, "GOFLAGS=-mod=mod")
}

// ensurePause builds the pause program from the source embedded in this
// binary and packs it as PauseImageRef. The dir is named after the source
// and the name, so a changed pause is rebuilt.
func (in *Installer) ensurePause(ctx context.Context, goCmd string) (string, error) {
	sum := sha256.Sum256(append(image.PauseSource(), PauseImageRef...))
	return in.ensureTool(ctx, tool{
		name:  "pause",
		dir:   "pause-" + hex.EncodeToString(sum[:6]),
		files: []string{"pause", imageFile(PauseImage)},
		title: "Building the pause image " + PauseImageRef,
		build: func(ctx context.Context, p progress.Reporter, tmp string) error {
			src := filepath.Join(tmp, "src")
			if err := image.WritePauseModule(src); err != nil {
				return err
			}
			bin := filepath.Join(tmp, "pause")
			cmd := exec.Command(ctx, goCmd, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
			cmd.Dir, cmd.Env = src, toolBuildEnv()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("build pause: %w", err)
			}
			if err := os.RemoveAll(src); err != nil {
				return err
			}
			return image.Pack(ctx, image.PackOptions{
				Ref:        PauseImageRef,
				Files:      map[string]string{"/pause": bin},
				Entrypoint: []string{"/pause"},
				User:       image.PauseImageUser,
				Output:     filepath.Join(tmp, imageFile(PauseImage)),
			})
		},
	})
}

// coreDNSGoMod and coreDNSMain make the module that builds CoreDNS with only
// CoreDNSPlugins: fewer dependencies, a faster build, a smaller binary.
const coreDNSGoMod = `module ephemera.local/coredns

go 1.26.0

require github.com/coredns/coredns %s
`

const coreDNSMain = `// Code generated by ephemera. DO NOT EDIT.

// Command coredns is CoreDNS with only the plugins a cluster's DNS needs.
package main

import (
	"log"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
%s)

// directives are the plugins in CoreDNS's execution order.
var directives = []string{%s}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		log.Fatal(err)
	}
	coremain.Run()
}
`

// writeCoreDNSModule writes the CoreDNS module into dir.
func writeCoreDNSModule(dir string) error {
	var imports, directives strings.Builder
	for i, p := range CoreDNSPlugins {
		fmt.Fprintf(&imports, "\t_ \"github.com/coredns/coredns/plugin/%s\"\n", p)
		if i > 0 {
			directives.WriteString(", ")
		}
		fmt.Fprintf(&directives, "%q", p)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(fmt.Sprintf(coreDNSGoMod, CoreDNSVersion)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "main.go"), []byte(fmt.Sprintf(coreDNSMain, "\n"+imports.String(), directives.String())), 0o644)
}

// ensureCoreDNS builds CoreDNS CoreDNSVersion from the Go module proxy and
// packs it as CoreDNSImageRef.
func (in *Installer) ensureCoreDNS(ctx context.Context, goCmd string) (string, error) {
	return in.ensureTool(ctx, tool{
		name:  "coredns",
		dir:   "coredns-" + CoreDNSVersion,
		files: []string{"coredns", imageFile(CoreDNSImage)},
		title: fmt.Sprintf("Building CoreDNS %s for cluster DNS (%s)", CoreDNSVersion, strings.Join(CoreDNSPlugins, ", ")),
		build: func(ctx context.Context, p progress.Reporter, tmp string) error {
			p.Update(cacheHint())
			src := filepath.Join(tmp, "src")
			if err := writeCoreDNSModule(src); err != nil {
				return err
			}
			bin := filepath.Join(tmp, "coredns")
			var done atomic.Int64
			cmd := exec.Command(ctx, goCmd, "build", "-trimpath", "-v", "-ldflags=-s -w", "-o", bin, ".")
			cmd.Dir, cmd.Env = src, toolBuildEnv()
			cmd.Stream = func(line string) {
				if strings.HasPrefix(line, "go: ") {
					p.Update(line[4:])
					return
				}
				p.Update(fmt.Sprintf("compiled %d packages", done.Add(1)))
			}
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("build CoreDNS %s: %w", CoreDNSVersion, err)
			}
			if err := os.RemoveAll(src); err != nil {
				return err
			}
			return image.Pack(ctx, image.PackOptions{
				Ref:        CoreDNSImageRef,
				Files:      map[string]string{"/coredns": bin},
				Entrypoint: []string{"/coredns"},
				Output:     filepath.Join(tmp, imageFile(CoreDNSImage)),
			})
		},
	})
}

// ensureKwok builds the node simulator and writes its stages.
func (in *Installer) ensureKwok(ctx context.Context, goCmd string) (string, error) {
	dir, err := in.ensureTool(ctx, tool{
		name:  "kwok",
		dir:   "kwok-" + KwokVersion,
		files: []string{Kwok, KwokStagesFile},
		title: fmt.Sprintf("Building the node simulator kwok %s", KwokVersion),
		build: func(ctx context.Context, p progress.Reporter, tmp string) error {
			cmd := exec.Command(ctx, goCmd, "install", "-trimpath", "-ldflags=-s -w", "sigs.k8s.io/kwok/cmd/kwok@"+KwokVersion)
			cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOFLAGS=")
			cmd.Stream = func(line string) { p.Update(strings.TrimPrefix(line, "go: ")) }
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("build kwok %s: %w", KwokVersion, err)
			}
			return writeKwokStages(ctx, goCmd, filepath.Join(tmp, KwokStagesFile))
		},
	})
	return filepath.Join(dir, Kwok), err
}
