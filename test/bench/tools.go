package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ephemera-dev/ephemera/internal/exec"
	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/kube"
)

// kubeBinaries are the binaries of one installed Kubernetes version, as
// `ephemera kube path` reports them; every tool runs these.
type kubeBinaries struct {
	dir               string
	apiserver         string
	controllerManager string
	scheduler         string
	etcd              string
	kwok              string
	kubectl           string
}

// resolveKube asks the ephemera CLI where the binaries of version are.
func resolveKube(ctx context.Context, ephemeraBin, version string) (kubeBinaries, error) {
	args := []string{"kube", "path"}
	if version != "" {
		args = append(args, "--version", version)
	}
	out, err := exec.Command(ctx, ephemeraBin, args...).Output()
	if err != nil {
		return kubeBinaries{}, err
	}
	dir := strings.TrimSpace(string(out))
	k := kubeBinaries{
		dir:               dir,
		apiserver:         filepath.Join(dir, kube.APIServer),
		controllerManager: filepath.Join(dir, kube.ControllerManager),
		scheduler:         filepath.Join(dir, kube.Scheduler),
		etcd:              filepath.Join(dir, kube.Etcd),
		kwok:              filepath.Join(dir, kube.Kwok),
		kubectl:           filepath.Join(dir, kube.Kubectl),
	}
	for _, f := range []string{k.apiserver, k.controllerManager, k.scheduler, k.etcd, k.kwok, k.kubectl} {
		if _, err := os.Stat(f); err != nil {
			return k, fmt.Errorf("installed Kubernetes lacks %s: %w", filepath.Base(f), err)
		}
	}
	return k, nil
}

// ensureKwokctl builds kwokctl (the kwok release ephemera uses) from the Go
// module proxy unless it is cached, into <cacheDir>/tools/kwokctl-VERSION,
// next to the tools ephemera itself caches there. A lock serialises
// concurrent runs; the build goes to a temporary dir renamed into place.
func ensureKwokctl(ctx context.Context, cacheDir string, log io.Writer) (string, error) {
	tools := filepath.Join(cacheDir, "tools")
	dir := filepath.Join(tools, "kwokctl-"+kube.KwokVersion)
	bin := filepath.Join(dir, "kwokctl")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(tools, 0o755); err != nil {
		return "", err
	}
	lock, err := flock.Acquire(ctx, filepath.Join(tools, ".kwokctl.lock"))
	if err != nil {
		return "", fmt.Errorf("wait for another kwokctl build: %w", err)
	}
	defer lock.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp, err := os.MkdirTemp(tools, ".kwokctl-tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(log, " • Building kwokctl %s from the Go module proxy (about 1.5 min on 2 cores when cold)\n", kube.KwokVersion)
	start := time.Now()
	cmd := exec.Command(ctx, "go", "install", "-trimpath", "-ldflags=-s -w", "sigs.k8s.io/kwok/cmd/kwokctl@"+kube.KwokVersion)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0")
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build kwokctl %s: %w", kube.KwokVersion, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmp, "kwokctl"), bin); err != nil {
		return "", fmt.Errorf("install kwokctl: %w", err)
	}
	fmt.Fprintf(log, " ✓ Built kwokctl in %s\n", time.Since(start).Round(time.Second))
	return bin, nil
}

// moduleVersion is the version of a module this program was built with.
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, m := range info.Deps {
		if m.Path == path {
			if m.Replace != nil {
				return m.Replace.Version
			}
			return m.Version
		}
	}
	return "unknown"
}
