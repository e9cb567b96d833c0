package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/mod/modfile"

	"github.com/ephemera-dev/ephemera/internal/image"
	"github.com/ephemera-dev/ephemera/internal/kube"
)

// kwokStageFiles mirrors kwokStages in install.go: the files the installer
// reads from the kwok module.
var kwokStageFiles = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

const kubernetesGoMod = `module k8s.io/kubernetes

go 1.26.0

require (
	go.etcd.io/etcd/server/v3 v3.6.8
	k8s.io/api v0.0.0
	k8s.io/apimachinery v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
	github.com/example/forked => github.com/example/forked v1.2.3
)
`

// Build behaviors of the fake go command.
const (
	buildOK     = "ok"      // creates every binary
	buildFail   = "fail"    // leaves a partial binary and exits 1
	buildNoEtcd = "no-etcd" // succeeds but produces no etcd ("server")
	buildNever  = "never"   // fails loudly if reached
	// buildCoreDNSFail makes the CoreDNS build fail (and the Kubernetes
	// build fail loudly if reached).
	buildCoreDNSFail = "coredns-fail"
)

// fakeGo is a fake go toolchain that records its invocations.
type fakeGo struct {
	path string // the script
	log  string // one line of argv per invocation
	// saved keeps what each tool build saw: <tool>.main.go, <tool>.go.mod
	// and <tool>.env (CGO_ENABLED, GOOS, GOARCH, GOFLAGS).
	saved string
}

// newFakeGo writes a fake go command. build selects what `go build` does;
// goMod is the k8s.io/kubernetes go.mod it serves ("" to report the version
// as unknown, like the module proxy).
func newFakeGo(t *testing.T, build, goMod string) fakeGo {
	t.Helper()
	dir := t.TempDir()

	kwokDir := filepath.Join(dir, "modcache", "sigs.k8s.io", "kwok@v0.8.0")
	for _, f := range kwokStageFiles {
		p := filepath.Join(kwokDir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("# stage "+f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goModPath := filepath.Join(dir, "modcache", "kubernetes.mod")
	if err := os.WriteFile(goModPath, []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}
	// The upstream main packages the installer copies.
	k8sDir := filepath.Join(dir, "modcache", "k8s.io", "kubernetes@v1")
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if err := os.MkdirAll(filepath.Join(k8sDir, "cmd", c, "app"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{c + ".go": "package main\n\nfunc main() {}\n", c + "_test.go": "package main\n", "OWNERS": "x\n"} {
			if err := os.WriteFile(filepath.Join(k8sDir, "cmd", c, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	f := fakeGo{path: filepath.Join(dir, "go"), log: filepath.Join(dir, "go.log"), saved: filepath.Join(dir, "saved")}
	if err := os.Mkdir(f.saved, 0o755); err != nil {
		t.Fatal(err)
	}
	kubeMod := fmt.Sprintf(`printf '{"Path":"k8s.io/kubernetes","Dir":"%s","GoMod":"%s"}\n'`, k8sDir, goModPath)
	if goMod == "" {
		kubeMod = `printf '{"Path":"k8s.io/kubernetes","Error":"k8s.io/kubernetes@%s: invalid version: unknown revision"}\n' "${4#*@}"; exit 1`
	}
	var buildCmd string
	switch build {
	case buildOK:
		buildCmd = `for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl server; do
			printf '#!/bin/sh\necho %s\n' "$b" > "$out$b" && chmod +x "$out$b" || exit 5
		done`
	case buildFail:
		buildCmd = `printf 'partial' > "${out}kube-apiserver"
		echo "k8s.io/kubernetes/cmd/kube-apiserver"
		echo "compile: something broke" >&2
		exit 1`
	case buildNoEtcd:
		buildCmd = `for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
			: > "$out$b"
		done`
	default:
		buildCmd = `echo "build must not run" >&2; exit 9`
	}
	coreDNSBuild := `printf '#!/bin/sh\necho coredns\n' > "$out" && chmod +x "$out"`
	if build == buildCoreDNSFail {
		coreDNSBuild = `echo "github.com/coredns/coredns/plugin/kubernetes"; echo "coredns: compile error" >&2; exit 1`
	}

	script := fmt.Sprintf(`#!/bin/sh
echo "$*" >> %[1]q
case "$1 $2" in
"install -trimpath")
	[ -n "$GOBIN" ] || { echo "GOBIN is not set" >&2; exit 3; }
	printf '#!/bin/sh\necho kwok\n' > "$GOBIN/kwok" && chmod +x "$GOBIN/kwok"
	;;
"mod download")
	case "$4" in
	sigs.k8s.io/kwok@v0.8.0) printf '{"Path":"sigs.k8s.io/kwok","Version":"v0.8.0","Dir":"%%s"}\n' %[2]q ;;
	k8s.io/kubernetes@*) %[3]s ;;
	*) echo "unexpected module $4" >&2; exit 2 ;;
	esac
	;;
"list -deps")
	echo k8s.io/kubernetes/cmd/kube-apiserver
	echo go.etcd.io/etcd/server/v3
	;;
"build -v")
	[ -f go.mod ] || { echo "go build outside the generated module" >&2; exit 4; }
	out=""
	prev=""
	for a in "$@"; do
		[ "$prev" = "-o" ] && out="$a"
		prev="$a"
	done
	[ -d "$out" ] || { echo "-o $out is not a directory" >&2; exit 4; }
	%[4]s
	;;
"build -trimpath")
	# A tool build (pause or CoreDNS) in a generated module.
	[ -f go.mod ] && [ -f main.go ] || { echo "tool build outside a generated module" >&2; exit 4; }
	out=""
	prev=""
	for a in "$@"; do
		[ "$prev" = "-o" ] && out="$a"
		prev="$a"
	done
	tool=pause
	grep -q coremain main.go && tool=coredns
	cp main.go %[5]q/$tool.main.go && cp go.mod %[5]q/$tool.go.mod
	echo "CGO_ENABLED=$CGO_ENABLED GOOS=$GOOS GOARCH=$GOARCH GOFLAGS=$GOFLAGS" > %[5]q/$tool.env
	if [ $tool = pause ]; then
		printf '#!/bin/sh\necho pause\n' > "$out" && chmod +x "$out"
	else
		%[6]s
	fi
	;;
"env GOVERSION")
	echo go1.26.8-fake
	;;
*)
	echo "unexpected go $*" >&2
	exit 2
	;;
esac
`, f.log, kwokDir, kubeMod, buildCmd, f.saved, coreDNSBuild)
	if err := os.WriteFile(f.path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// calls returns the first two words of every recorded invocation.
func (f fakeGo) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(f.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		w := strings.Fields(line)
		if len(w) > 2 {
			w = w[:2]
		}
		out = append(out, strings.Join(w, " "))
	}
	return out
}

func (f fakeGo) rawLog(t *testing.T) string {
	t.Helper()
	b, _ := os.ReadFile(f.log)
	return string(b)
}

// leftovers returns hidden temporary entries under dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Name(), "tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func assertNotInstalled(t *testing.T, cache kube.Cache, version string) {
	t.Helper()
	if inst, err := cache.Get(version); !errors.Is(err, kube.ErrNotInstalled) {
		t.Errorf("Cache.Get(%s) = %+v, %v; want ErrNotInstalled", version, inst, err)
	}
	list, err := cache.List()
	if err != nil {
		t.Errorf("Cache.List: %v", err)
	}
	if len(list) != 0 {
		t.Errorf("Cache.List = %+v, want empty", list)
	}
	if tmp := leftovers(t, filepath.Join(cache.Dir, "kube")); len(tmp) > 0 {
		t.Errorf("temporary build dirs left in kube/: %q", tmp)
	}
	if tmp := leftovers(t, filepath.Join(cache.Dir, "tools")); len(tmp) > 0 {
		t.Errorf("temporary kwok dirs left in tools/: %q", tmp)
	}
	if _, err := os.Stat(filepath.Join(cache.Dir, "kube", version)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("kube/%s exists after a failed install (stat err %v)", version, err)
	}
}

func TestInstallFailureLeavesNothingInstalled(t *testing.T) {
	const version = "v1.36.3"
	goModWithoutEtcd := strings.Replace(kubernetesGoMod, "go.etcd.io/etcd/server/v3 v3.6.8\n", "", 1)
	tests := []struct {
		name      string
		build     string
		goMod     string
		wantErr   []string
		wantErrIs error
		wantCalls []string
	}{
		{
			name:      "build fails",
			build:     buildFail,
			goMod:     kubernetesGoMod,
			wantErr:   []string{"build Kubernetes v1.36.3", "exit status 1", "compile: something broke"},
			wantCalls: []string{"install -trimpath", "mod download", "mod download", "build -trimpath", "build -trimpath", "list -deps", "build -v"},
		},
		{
			name:      "build produces no etcd",
			build:     buildNoEtcd,
			goMod:     kubernetesGoMod,
			wantErr:   []string{"install etcd"},
			wantCalls: []string{"install -trimpath", "mod download", "mod download", "build -trimpath", "build -trimpath", "list -deps", "build -v"},
		},
		{
			name:      "CoreDNS build fails",
			build:     buildCoreDNSFail,
			goMod:     kubernetesGoMod,
			wantErr:   []string{"build CoreDNS " + kube.CoreDNSVersion, "coredns: compile error"},
			wantCalls: []string{"install -trimpath", "mod download", "mod download", "build -trimpath", "build -trimpath"},
		},
		{
			name:      "unknown release",
			build:     buildNever,
			goMod:     "",
			wantErr:   []string{"the Go module proxy has no k8s.io/kubernetes v1.36.3"},
			wantErrIs: kube.ErrUnknownVersion,
			wantCalls: []string{"install -trimpath", "mod download", "mod download"},
		},
		{
			name:      "go.mod without etcd",
			build:     buildNever,
			goMod:     goModWithoutEtcd,
			wantErr:   []string{"go.mod names no go.etcd.io/etcd/server/v3"},
			wantCalls: []string{"install -trimpath", "mod download", "mod download"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeGo(t, tt.build, tt.goMod)
			in := kube.Installer{Cache: kube.Cache{Dir: t.TempDir()}, Go: fake.path}

			inst, built, err := in.Install(context.Background(), version)
			if err == nil {
				t.Fatalf("Install = %+v, %v, nil; want error\ngo log:\n%s", inst, built, fake.rawLog(t))
			}
			if inst != nil || built {
				t.Errorf("Install = %+v, built %v along with error %v", inst, built, err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErrIs)
			}
			if got := fake.calls(t); !reflect.DeepEqual(got, tt.wantCalls) {
				t.Errorf("go invocations = %q, want %q", got, tt.wantCalls)
			}
			assertNotInstalled(t, in.Cache, version)
		})
	}
}

func TestInstallSuccess(t *testing.T) {
	const version = "v1.36.3"
	ctx := context.Background()
	fake := newFakeGo(t, buildOK, kubernetesGoMod)
	cache := kube.Cache{Dir: t.TempDir()}
	in := kube.Installer{Cache: cache, Go: fake.path}

	inst, built, err := in.Install(ctx, version)
	if err != nil {
		t.Fatalf("Install: %v\ngo log:\n%s", err, fake.rawLog(t))
	}
	if !built {
		t.Error("Install built = false for a fresh cache, want true")
	}
	wantCalls := []string{"install -trimpath", "mod download", "mod download", "build -trimpath", "build -trimpath", "list -deps", "build -v", "env GOVERSION"}
	if got := fake.calls(t); !reflect.DeepEqual(got, wantCalls) {
		t.Errorf("go invocations = %q, want %q", got, wantCalls)
	}
	log := fake.rawLog(t)
	for _, want := range []string{
		"install -trimpath -ldflags=-s -w sigs.k8s.io/kwok/cmd/kwok@v0.8.0\n",
		"mod download -json sigs.k8s.io/kwok@v0.8.0\n",
		"mod download -json k8s.io/kubernetes@v1.36.3\n",
		"go.etcd.io/etcd/server/v3 ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl\n",
		"-X k8s.io/component-base/version.gitVersion=v1.36.3 ",
		"-X k8s.io/component-base/version.gitMinor=36 ",
		"build -trimpath -ldflags=-s -w -o ",
		"build -trimpath -v -ldflags=-s -w -o ",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("go log does not contain %q:\n%s", want, log)
		}
	}

	wantDir := filepath.Join(cache.Dir, "kube", version)
	if inst.Dir != wantDir {
		t.Errorf("Dir = %s, want %s", inst.Dir, wantDir)
	}
	if inst.Version != version || inst.EtcdVersion != "v3.6.8" || inst.KwokVersion != kube.KwokVersion || inst.CoreDNSVersion != kube.CoreDNSVersion || inst.GoVersion != "go1.26.8-fake" {
		t.Errorf("Installation = %+v, want version %s, etcd v3.6.8, kwok %s, CoreDNS %s, go go1.26.8-fake", inst, version, kube.KwokVersion, kube.CoreDNSVersion)
	}
	if inst.BuiltAt.IsZero() {
		t.Error("BuiltAt is zero")
	}

	got, err := cache.Get(version)
	if err != nil {
		t.Fatalf("Cache.Get after Install: %v", err)
	}
	// The manifest stores the build duration in whole seconds.
	wantGot := *inst
	wantGot.BuildDuration = kube.Duration(time.Duration(inst.BuildDuration).Round(time.Second))
	if !reflect.DeepEqual(*got, wantGot) {
		t.Errorf("Cache.Get = %+v\nwant %+v", got, wantGot)
	}
	list, err := cache.List()
	if err != nil || len(list) != 1 || list[0].Version != version {
		t.Errorf("Cache.List = %+v, %v; want just %s", list, err, version)
	}

	for _, c := range kube.Components {
		fi, err := os.Stat(got.Bin(c))
		if err != nil {
			t.Errorf("component %s: %v", c, err)
			continue
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("component %s is not executable: %v", c, fi.Mode())
		}
	}
	if _, err := os.Stat(filepath.Join(got.Dir, "bin", "server")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bin/server still exists after renaming it to etcd (err %v)", err)
	}
	if b, err := os.ReadFile(got.Bin(kube.Etcd)); err != nil || !strings.Contains(string(b), "echo server") {
		t.Errorf("etcd binary = %q, %v; want the built server binary", b, err)
	}
	stages, err := os.ReadFile(got.KwokStages())
	if err != nil {
		t.Fatalf("kwok stages: %v", err)
	}
	var wantStages strings.Builder
	for _, f := range kwokStageFiles {
		wantStages.WriteString("---\n# stage " + f + "\n")
	}
	if string(stages) != wantStages.String() {
		t.Errorf("kwok stages =\n%s\nwant\n%s", stages, wantStages.String())
	}

	// The control plane is built from copies of the upstream main packages
	// (no tests, no other files) with the GC holiday added.
	for _, c := range []string{kube.APIServer, kube.ControllerManager, kube.Scheduler} {
		entries, err := os.ReadDir(filepath.Join(cache.Dir, "build", version, "cmd", c))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if want := []string{c + ".go", "zz_ephemera_gc_holiday.go"}; !reflect.DeepEqual(names, want) {
			t.Errorf("main package of %s holds %q, want %q", c, names, want)
		}
	}

	// The generated module pins k8s.io/kubernetes and maps every staging
	// replace to the matching v0 release, and nothing else.
	modPath := filepath.Join(cache.Dir, "build", version, "go.mod")
	modData, err := os.ReadFile(modPath)
	if err != nil {
		t.Fatalf("generated go.mod: %v", err)
	}
	if !strings.Contains(string(modData), "k8s.io/api => k8s.io/api v0.36.3") {
		t.Errorf("generated go.mod lacks k8s.io/api => k8s.io/api v0.36.3:\n%s", modData)
	}
	mod, err := modfile.Parse(modPath, modData, nil)
	if err != nil {
		t.Fatalf("parse generated go.mod: %v", err)
	}
	if mod.Module.Mod.Path != "ephemera.local/kube-v1.36.3" {
		t.Errorf("module = %s", mod.Module.Mod.Path)
	}
	if mod.Go == nil || mod.Go.Version != "1.26.0" {
		t.Errorf("go directive = %+v, want 1.26.0 from upstream", mod.Go)
	}
	var requires []string
	for _, r := range mod.Require {
		requires = append(requires, r.Mod.String())
	}
	if want := []string{"k8s.io/kubernetes@v1.36.3"}; !reflect.DeepEqual(requires, want) {
		t.Errorf("requires = %q, want %q", requires, want)
	}
	var replaces []string
	for _, r := range mod.Replace {
		replaces = append(replaces, r.Old.String()+" => "+r.New.String())
	}
	wantReplaces := []string{
		"k8s.io/api => k8s.io/api@v0.36.3",
		"k8s.io/apimachinery => k8s.io/apimachinery@v0.36.3",
	}
	if !reflect.DeepEqual(replaces, wantReplaces) {
		t.Errorf("replaces = %q, want %q", replaces, wantReplaces)
	}

	if tmp := leftovers(t, filepath.Join(cache.Dir, "kube")); len(tmp) > 0 {
		t.Errorf("temporary build dirs left in kube/: %q", tmp)
	}
	if tmp := leftovers(t, filepath.Join(cache.Dir, "tools")); len(tmp) > 0 {
		t.Errorf("temporary build dirs left in tools/: %q", tmp)
	}
	checkImages(t, fake, got)

	// A second install finds the version and runs no go command at all.
	before := len(fake.calls(t))
	again, built, err := in.Install(ctx, version)
	if err != nil {
		t.Fatalf("second Install: %v", err)
	}
	if built {
		t.Error("second Install built = true, want false")
	}
	if !reflect.DeepEqual(again, got) {
		t.Errorf("second Install = %+v, want %+v", again, got)
	}
	if calls := fake.calls(t)[before:]; len(calls) != 0 {
		t.Errorf("second Install ran go %q, want nothing", calls)
	}
}

// checkImages checks the image archives of inst and how the tools in them
// were built.
func checkImages(t *testing.T, fake fakeGo, inst *kube.Installation) {
	t.Helper()
	for _, img := range []struct {
		name, ref, file, entrypoint, user string
	}{
		{kube.PauseImage, kube.PauseImageRef, "/pause", "/pause", "65535:65535"},
		{kube.CoreDNSImage, kube.CoreDNSImageRef, "/coredns", "/coredns", ""},
	} {
		path := inst.Image(img.name)
		if want := filepath.Join(inst.Dir, "images", img.name+".tar"); path != want {
			t.Errorf("Image(%s) = %s, want %s", img.name, path, want)
		}
		a, err := image.Inspect(path)
		if err != nil {
			t.Errorf("image %s: %v", img.name, err)
			continue
		}
		if want := []string{img.ref}; !reflect.DeepEqual(a.Names, want) || a.Format != image.FormatDocker {
			t.Errorf("image %s holds %s %q, want docker-save %q", img.name, a.Format, a.Names, want)
		}
		tag, _ := name.NewTag(img.ref)
		ggImg, err := tarball.ImageFromPath(path, &tag)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := ggImg.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cf.Config.Entrypoint, []string{img.entrypoint}) || cf.Config.User != img.user {
			t.Errorf("image %s: entrypoint %q, user %q; want [%s], %q", img.name, cf.Config.Entrypoint, cf.Config.User, img.entrypoint, img.user)
		}
	}
	for _, tool := range []string{"pause", "coredns"} {
		env, err := os.ReadFile(filepath.Join(fake.saved, tool+".env"))
		if err != nil {
			t.Fatalf("%s was not built: %v", tool, err)
		}
		if want := "CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS=-mod=mod\n"; string(env) != want {
			t.Errorf("%s built with %q, want %q", tool, env, want)
		}
	}
	pauseMain, _ := os.ReadFile(filepath.Join(fake.saved, "pause.main.go"))
	if !bytes.Equal(pauseMain, image.PauseSource()) {
		t.Errorf("pause built from\n%s\nwant the embedded pause source", pauseMain)
	}

	// CoreDNS is built with just the plugins it needs, in CoreDNS's order.
	mod, _ := os.ReadFile(filepath.Join(fake.saved, "coredns.go.mod"))
	if !strings.Contains(string(mod), "require github.com/coredns/coredns "+kube.CoreDNSVersion+"\n") {
		t.Errorf("CoreDNS go.mod does not require CoreDNS %s:\n%s", kube.CoreDNSVersion, mod)
	}
	src, _ := os.ReadFile(filepath.Join(fake.saved, "coredns.main.go"))
	file, err := parser.ParseFile(token.NewFileSet(), "main.go", src, 0)
	if err != nil {
		t.Fatalf("generated CoreDNS main: %v\n%s", err, src)
	}
	var plugins []string
	for _, imp := range file.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if imp.Name != nil && imp.Name.Name == "_" {
			plugins = append(plugins, strings.TrimPrefix(p, "github.com/coredns/coredns/plugin/"))
		}
	}
	wantOrder := []string{"reload", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes", "loop", "forward"}
	sortedWant := append([]string(nil), wantOrder...)
	sort.Strings(sortedWant)
	sort.Strings(plugins)
	if !reflect.DeepEqual(plugins, sortedWant) {
		t.Errorf("CoreDNS main imports plugins %q, want %q", plugins, sortedWant)
	}
	quoted := make([]string, len(wantOrder))
	for i, p := range wantOrder {
		quoted[i] = strconv.Quote(p)
	}
	if want := "var directives = []string{" + strings.Join(quoted, ", ") + "}"; !strings.Contains(string(src), want) {
		t.Errorf("CoreDNS main does not hold %s:\n%s", want, src)
	}
	if !strings.Contains(string(src), "dnsserver.SetDirectives(directives)") || !strings.Contains(string(src), "coremain.Run()") {
		t.Errorf("CoreDNS main does not set the directives and run CoreDNS:\n%s", src)
	}
}

// TestInstallRetryAfterFailure checks that a failed build does not poison the
// cache: a later install of the same version succeeds and reuses kwok.
func TestInstallRetryAfterFailure(t *testing.T) {
	const version = "v1.35.4"
	ctx := context.Background()
	cache := kube.Cache{Dir: t.TempDir()}

	failing := newFakeGo(t, buildFail, kubernetesGoMod)
	if _, _, err := (&kube.Installer{Cache: cache, Go: failing.path}).Install(ctx, version); err == nil {
		t.Fatal("Install with a failing build: want error")
	}
	assertNotInstalled(t, cache, version)

	ok := newFakeGo(t, buildOK, kubernetesGoMod)
	inst, built, err := (&kube.Installer{Cache: cache, Go: ok.path}).Install(ctx, version)
	if err != nil {
		t.Fatalf("retry Install: %v\ngo log:\n%s", err, ok.rawLog(t))
	}
	if !built || inst.Version != version {
		t.Errorf("retry Install = %+v, built %v; want %s built", inst, built, version)
	}
	// kwok was built by the first attempt and is shared across versions.
	want := []string{"mod download", "list -deps", "build -v", "env GOVERSION"}
	if got := ok.calls(t); !reflect.DeepEqual(got, want) {
		t.Errorf("retry go invocations = %q, want %q (kwok not rebuilt)", got, want)
	}
	if !strings.Contains(ok.rawLog(t), "-X k8s.io/component-base/version.gitMinor=35 ") {
		t.Errorf("build not stamped with minor 35:\n%s", ok.rawLog(t))
	}
	if _, err := os.Stat(inst.Bin(kube.Kwok)); err != nil {
		t.Errorf("kwok: %v", err)
	}
	if _, err := os.Stat(inst.KwokStages()); err != nil {
		t.Errorf("kwok stages: %v", err)
	}
}

func TestInstallRejectsInvalidVersion(t *testing.T) {
	fake := newFakeGo(t, buildNever, kubernetesGoMod)
	cache := kube.Cache{Dir: t.TempDir()}
	in := kube.Installer{Cache: cache, Go: fake.path}
	for _, v := range []string{"latest", "v1.32.9", "v1.37.0", "1.36.3"} {
		_, built, err := in.Install(context.Background(), v)
		if !errors.Is(err, kube.ErrInvalidVersion) || built {
			t.Errorf("Install(%q) = built %v, %v; want ErrInvalidVersion", v, built, err)
		}
	}
	if calls := fake.calls(t); len(calls) != 0 {
		t.Errorf("go ran for invalid versions: %q", calls)
	}
	if _, err := os.Stat(filepath.Join(cache.Dir, "kube")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cache written for invalid versions (stat err %v)", err)
	}
}

func TestInstallMissingGo(t *testing.T) {
	cache := kube.Cache{Dir: t.TempDir()}
	in := kube.Installer{Cache: cache, Go: filepath.Join(t.TempDir(), "no-such-go")}
	_, built, err := in.Install(context.Background(), kube.DefaultVersion)
	if err == nil || built {
		t.Fatalf("Install without go = built %v, %v; want error", built, err)
	}
	if !strings.Contains(err.Error(), "Go toolchain") {
		t.Errorf("error %q does not say the Go toolchain is missing", err)
	}
	assertNotInstalled(t, cache, kube.DefaultVersion)
}

// TestInstallRebuildsDamagedTool checks that the tools are shared by
// versions, and that a tool dir missing a file is rebuilt while the
// installations made from it keep their images.
func TestInstallRebuildsDamagedTool(t *testing.T) {
	ctx := context.Background()
	cache := kube.Cache{Dir: t.TempDir()}
	first := newFakeGo(t, buildOK, kubernetesGoMod)
	old, _, err := (&kube.Installer{Cache: cache, Go: first.path}).Install(ctx, "v1.36.3")
	if err != nil {
		t.Fatalf("Install: %v\ngo log:\n%s", err, first.rawLog(t))
	}
	if err := os.Remove(filepath.Join(cache.Dir, "tools", "coredns-"+kube.CoreDNSVersion, "coredns.tar")); err != nil {
		t.Fatal(err)
	}

	second := newFakeGo(t, buildOK, kubernetesGoMod)
	inst, _, err := (&kube.Installer{Cache: cache, Go: second.path}).Install(ctx, "v1.35.4")
	if err != nil {
		t.Fatalf("Install: %v\ngo log:\n%s", err, second.rawLog(t))
	}
	// kwok and pause are reused; only CoreDNS is built again.
	want := []string{"mod download", "build -trimpath", "list -deps", "build -v", "env GOVERSION"}
	if got := second.calls(t); !reflect.DeepEqual(got, want) {
		t.Errorf("go invocations = %q, want %q", got, want)
	}
	if !strings.Contains(second.rawLog(t), "build -trimpath -v ") {
		t.Errorf("the rebuilt tool is not CoreDNS:\n%s", second.rawLog(t))
	}
	for _, i := range []*kube.Installation{old, inst} {
		for _, img := range kube.Images {
			if _, err := image.Inspect(i.Image(img)); err != nil {
				t.Errorf("%s image of %s: %v", img, i.Version, err)
			}
		}
	}
}
