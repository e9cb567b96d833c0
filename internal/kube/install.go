package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/ephemera-dev/ephemera/internal/exec"
	"github.com/ephemera-dev/ephemera/internal/flock"
	"github.com/ephemera-dev/ephemera/internal/progress"
)

// KwokVersion is the node simulator release built with every installation.
const KwokVersion = "v0.8.0"

// mainPackages maps each component to the main package that builds it:
// ours (see writeMains) for the control plane, upstream's for the rest.
var mainPackages = map[string]string{
	APIServer:         "./cmd/kube-apiserver",
	ControllerManager: "./cmd/kube-controller-manager",
	Scheduler:         "./cmd/kube-scheduler",
	Kubectl:           "k8s.io/kubernetes/cmd/kubectl",
	Kubelet:           "k8s.io/kubernetes/cmd/kubelet",
	Proxy:             "k8s.io/kubernetes/cmd/kube-proxy",
	Etcd:              "go.etcd.io/etcd/server/v3",
}

// Installer builds Kubernetes versions into a Cache with the Go toolchain.
type Installer struct {
	// Cache receives the installations.
	Cache Cache
	// Go is the go command; "go" from PATH when empty.
	Go string
	// Progress receives build progress.
	Progress progress.Reporter
}

// Install builds version into the cache unless it is already there, and
// returns the installation. The build happens in a temporary dir that is
// renamed into place only when complete, so an interrupted or failed build
// never counts as installed. Concurrent installs of one version wait for each
// other.
func (in *Installer) Install(ctx context.Context, version string) (*Installation, bool, error) {
	minor, err := Minor(version)
	if err != nil {
		return nil, false, err
	}
	if inst, err := in.Cache.Get(version); err == nil {
		return inst, false, nil
	}
	if err := os.MkdirAll(in.Cache.versionsDir(), 0o755); err != nil {
		return nil, false, fmt.Errorf("create cache dir: %w", err)
	}
	lock, err := flock.Acquire(ctx, filepath.Join(in.Cache.versionsDir(), "."+version+".lock"))
	if err != nil {
		return nil, false, fmt.Errorf("wait for another install of %s: %w", version, err)
	}
	defer lock.Unlock()
	if inst, err := in.Cache.Get(version); err == nil {
		return inst, false, nil // another process installed it while we waited
	}
	removeStale(in.Cache.versionsDir(), "."+version+".tmp-")
	goCmd, err := in.goCommand()
	if err != nil {
		return nil, false, err
	}
	started := time.Now()

	kwok, err := in.ensureKwok(ctx, goCmd)
	if err != nil {
		return nil, false, err
	}

	tmp, err := os.MkdirTemp(in.Cache.versionsDir(), "."+version+".tmp-")
	if err != nil {
		return nil, false, fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place

	modDir := filepath.Join(in.Cache.Dir, "build", version)
	etcdVersion, err := in.writeModule(ctx, goCmd, modDir, version, minor)
	if err != nil {
		return nil, false, err
	}
	binDir := filepath.Join(tmp, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, false, err
	}
	pauseDir, err := in.ensurePause(ctx, goCmd)
	if err != nil {
		return nil, false, err
	}
	coreDNSDir, err := in.ensureCoreDNS(ctx, goCmd)
	if err != nil {
		return nil, false, err
	}
	if err := in.build(ctx, goCmd, modDir, binDir, version, minor); err != nil {
		return nil, false, err
	}
	// go build names the etcd binary after its module path.
	if err := os.Rename(filepath.Join(binDir, "server"), filepath.Join(binDir, Etcd)); err != nil {
		return nil, false, fmt.Errorf("install etcd: %w", err)
	}
	for _, c := range builtComponents {
		if !fileExists(filepath.Join(binDir, c)) {
			return nil, false, fmt.Errorf("build Kubernetes %s: go build made no %s", version, c)
		}
	}
	if err := linkOrCopy(kwok, filepath.Join(binDir, Kwok)); err != nil {
		return nil, false, fmt.Errorf("install kwok: %w", err)
	}
	if err := linkOrCopy(filepath.Join(filepath.Dir(kwok), KwokStagesFile), filepath.Join(tmp, KwokStagesFile)); err != nil {
		return nil, false, fmt.Errorf("install kwok stages: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, imagesDir), 0o755); err != nil {
		return nil, false, err
	}
	for name, dir := range map[string]string{PauseImage: pauseDir, CoreDNSImage: coreDNSDir} {
		if err := linkOrCopy(filepath.Join(dir, imageFile(name)), filepath.Join(tmp, imagesDir, imageFile(name))); err != nil {
			return nil, false, fmt.Errorf("install the %s image: %w", name, err)
		}
	}
	goVersion, _ := exec.Command(ctx, goCmd, "env", "GOVERSION").Output()
	inst := &Installation{
		Recipe:         buildRecipe,
		Version:        version,
		EtcdVersion:    etcdVersion,
		KwokVersion:    KwokVersion,
		CoreDNSVersion: CoreDNSVersion,
		GoVersion:      strings.TrimSpace(string(goVersion)),
		BuiltAt:        time.Now().UTC().Truncate(time.Second),
		BuildDuration:  Duration(time.Since(started)),
	}
	b, _ := json.MarshalIndent(inst, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, manifestFile), append(b, '\n'), 0o644); err != nil {
		return nil, false, err
	}
	final := in.Cache.versionDir(version)
	_ = os.RemoveAll(final) // an unfinished dir without manifest from an older layout
	if err := os.Rename(tmp, final); err != nil {
		return nil, false, fmt.Errorf("install %s: %w", version, err)
	}
	inst.Dir = final
	return inst, true, nil
}

func (in *Installer) goCommand() (string, error) {
	goCmd := in.Go
	if goCmd == "" {
		goCmd = "go"
	}
	p, err := lookPath(goCmd)
	if err != nil {
		return "", fmt.Errorf("the Go toolchain builds Kubernetes and was not found (%w): install Go 1.26 or newer from https://go.dev/dl and put it on PATH", err)
	}
	return p, nil
}

func (in *Installer) progress() progress.Reporter {
	if in.Progress == nil {
		return progress.Discard
	}
	return in.Progress
}

// writeModule writes a Go module that requires k8s.io/kubernetes at version
// and pins every staging module to the matching v0 release, the way the
// Kubernetes repository's own go.mod replaces them with local directories.
// It returns the etcd version that Kubernetes release depends on.
func (in *Installer) writeModule(ctx context.Context, goCmd, dir, version string, minor int) (string, error) {
	var etcdVersion string
	err := in.step(fmt.Sprintf("Resolving Kubernetes %s on the Go module proxy", version), func(progress.Reporter) error {
		info, err := download(ctx, goCmd, "k8s.io/kubernetes", version)
		if err != nil {
			return err
		}
		upstream, err := parseGoMod(info.GoMod)
		if err != nil {
			return err
		}
		staging := fmt.Sprintf("v0.%d.%s", minor, strings.SplitN(version, ".", 3)[2])
		mod := new(modfile.File)
		if err := mod.AddModuleStmt("ephemera.local/kube-" + version); err != nil {
			return err
		}
		if upstream.Go != nil {
			if err := mod.AddGoStmt(upstream.Go.Version); err != nil {
				return err
			}
		}
		if err := mod.AddRequire("k8s.io/kubernetes", version); err != nil {
			return err
		}
		for _, r := range upstream.Require {
			if r.Mod.Path == "go.etcd.io/etcd/server/v3" {
				etcdVersion = r.Mod.Version
			}
		}
		if etcdVersion == "" {
			return fmt.Errorf("k8s.io/kubernetes %s: go.mod names no go.etcd.io/etcd/server/v3", version)
		}
		for _, r := range upstream.Replace {
			if strings.HasPrefix(r.New.Path, "./staging/") {
				if err := mod.AddReplace(r.Old.Path, "", r.Old.Path, staging); err != nil {
					return err
				}
			}
		}
		b, err := mod.Format()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), b, 0o644); err != nil {
			return err
		}
		return writeMains(info.Dir, dir)
	})
	return etcdVersion, err
}

// gcHolidayMain is added to each control-plane main package. Start-up of a
// Kubernetes component on a small machine spends a good part of its time in
// the garbage collector while the heap grows from nothing; with
// EPHEMERA_GC_HOLIDAY set, collection waits until that time has passed or
// the heap reaches EPHEMERA_GC_HOLIDAY_LIMIT_MIB (default 512), then runs as
// GOGC says and the start-up garbage is returned to the OS at once.
const gcHolidayMain = `// Code generated by ephemera. DO NOT EDIT.

package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"time"
)

func init() {
	holiday, err := time.ParseDuration(os.Getenv("EPHEMERA_GC_HOLIDAY"))
	if err != nil || holiday <= 0 {
		return
	}
	limitMiB, err := strconv.ParseInt(os.Getenv("EPHEMERA_GC_HOLIDAY_LIMIT_MIB"), 10, 64)
	if err != nil || limitMiB <= 0 {
		limitMiB = 512
	}
	prevLimit := debug.SetMemoryLimit(limitMiB << 20)
	prevPercent := debug.SetGCPercent(-1)
	time.AfterFunc(holiday, func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
		debug.FreeOSMemory()
	})
}
`

// ownMains are the components built from main packages of our own: the
// upstream main files plus gcHolidayMain.
var ownMains = []string{APIServer, ControllerManager, Scheduler}

// writeMains copies the upstream main package of each of ownMains from the
// Kubernetes module in k8sDir into modDir/cmd/<component>, with the GC
// holiday added.
func writeMains(k8sDir, modDir string) error {
	for _, c := range ownMains {
		src := filepath.Join(k8sDir, "cmd", c)
		dst := filepath.Join(modDir, "cmd", c)
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return fmt.Errorf("read upstream main of %s: %w", c, err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(src, name))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dst, "zz_ephemera_gc_holiday.go"), []byte(gcHolidayMain), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ErrUnknownVersion is returned when the module proxy has no such release.
var ErrUnknownVersion = errors.New("unknown Kubernetes version")

// modInfo is what `go mod download -json` reports of a module.
type modInfo struct {
	Dir   string
	GoMod string
	Error string
}

// download fetches a module into the module cache through the Go proxy.
func download(ctx context.Context, goCmd, path, version string) (*modInfo, error) {
	dir, err := os.MkdirTemp("", "ephemera-modresolve-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module resolve\n"), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(ctx, goCmd, "mod", "download", "-json", path+"@"+version)
	cmd.Dir = dir
	out, err := cmd.Output()
	var info modInfo
	_ = json.Unmarshal(out, &info)
	if info.Error != "" && (strings.Contains(info.Error, "unknown revision") || strings.Contains(info.Error, "invalid version")) {
		return nil, fmt.Errorf("%w %s: the Go module proxy has no %s %s (known Kubernetes versions: %v)", ErrUnknownVersion, version, path, version, KnownVersions)
	}
	if err != nil {
		return nil, fmt.Errorf("download %s %s: %w", path, version, err)
	}
	return &info, nil
}

func moduleDir(ctx context.Context, goCmd, path, version string) (string, error) {
	info, err := download(ctx, goCmd, path, version)
	if err != nil {
		return "", err
	}
	return info.Dir, nil
}

func parseGoMod(path string) (*modfile.File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return modfile.Parse(path, b, nil)
}

// build compiles every component with the version stamped in, counting the
// packages it compiles for progress.
func (in *Installer) build(ctx context.Context, goCmd, modDir, binDir, version string, minor int) error {
	pkgs := make([]string, 0, len(mainPackages))
	for _, c := range builtComponents {
		pkgs = append(pkgs, mainPackages[c])
	}
	env := append(os.Environ(), "GOFLAGS=-mod=mod")
	return in.step(fmt.Sprintf("Building Kubernetes %s from source (%s)", version, strings.Join(builtComponents, ", ")), func(p progress.Reporter) error {
		p.Update(cacheHint())
		list := exec.Command(ctx, goCmd, append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)...)
		list.Dir, list.Env = modDir, env
		total := 0
		if out, err := list.Output(); err == nil {
			total = strings.Count(string(out), "\n")
		}
		var done atomic.Int64
		args := append([]string{"build", "-v", "-trimpath", "-ldflags", versionLDFlags(version, minor), "-o", binDir + string(os.PathSeparator)}, pkgs...)
		cmd := exec.Command(ctx, goCmd, args...)
		cmd.Dir, cmd.Env = modDir, env
		cmd.Stream = func(line string) {
			if strings.HasPrefix(line, "go: downloading") {
				p.Update(line[4:])
				return
			}
			n := done.Add(1)
			if total > 0 {
				p.Update(fmt.Sprintf("compiled %d packages of at most %d", n, total))
			} else {
				p.Update(fmt.Sprintf("compiled %d packages", n))
			}
		}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build Kubernetes %s: %w", version, err)
		}
		return nil
	})
}

func cacheHint() string {
	return fmt.Sprintf("a few minutes on %d cores when cold, seconds when the Go build cache is warm", runtime.NumCPU())
}

// versionLDFlags stamps the release into the binaries the way the Kubernetes
// build does; without it every component reports v0.0.0-master.
func versionLDFlags(version string, minor int) string {
	var b strings.Builder
	b.WriteString("-s -w")
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, " -X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%d -X %s.gitTreeState=clean", pkg, version, pkg, pkg, minor, pkg)
	}
	return b.String()
}

// step reports fn as one progress step that ends with fn's outcome.
func (in *Installer) step(name string, fn func(progress.Reporter) error) error {
	p := in.progress()
	p.Start(name)
	err := fn(p)
	p.End(err == nil)
	return err
}

// removeStale removes temporary build dirs left by a killed install; the
// caller holds the lock that guards them.
func removeStale(dir, prefix string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// KwokStagesFile holds the simulator's default node and pod lifecycle
// stages, the ones kwokctl uses: nodes become Ready and renew leases, pods
// become Running and Ready, complete and are deleted.
const KwokStagesFile = "kwok-stages.yaml"

var kwokStages = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

func writeKwokStages(ctx context.Context, goCmd, dst string) error {
	dir, err := moduleDir(ctx, goCmd, "sigs.k8s.io/kwok", KwokVersion)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, f := range kwokStages {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return fmt.Errorf("read kwok stage: %w", err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return os.WriteFile(dst, []byte(b.String()), 0o644)
}
