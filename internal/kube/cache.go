package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Component names: the binaries an installation holds.
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	Kubectl           = "kubectl"
	Kubelet           = "kubelet"
	Proxy             = "kube-proxy"
	Kwok              = "kwok"
)

// builtComponents are the binaries `go build` makes for a version, in the
// order they are reported.
var builtComponents = []string{Etcd, APIServer, ControllerManager, Scheduler, Kubelet, Proxy, Kubectl}

// Components lists every binary of an installation.
var Components = append(append([]string{}, builtComponents...), Kwok)

// CacheDirEnv overrides the default cache directory.
const CacheDirEnv = "EPHEMERA_CACHE_DIR"

// buildRecipe changes whenever Install builds differently; installations
// made with an older recipe count as not installed and are rebuilt.
const buildRecipe = 5

// manifestFile marks a finished installation; it is written last, inside a
// temporary dir that is renamed into place, so a version either is fully
// installed or is not there at all.
const manifestFile = "install.json"

// ErrNotInstalled is returned when a version has not been installed.
var ErrNotInstalled = errors.New("Kubernetes version not installed") //nolint:staticcheck // ST1005: Kubernetes is a name

// Installation is one installed Kubernetes version.
type Installation struct {
	// Recipe is the buildRecipe the installation was made with.
	Recipe int `json:"recipe"`
	// Version is the Kubernetes release, like v1.36.3.
	Version string `json:"version"`
	// EtcdVersion is the etcd release built alongside.
	EtcdVersion string `json:"etcdVersion"`
	// KwokVersion is the node simulator release.
	KwokVersion string `json:"kwokVersion"`
	// CoreDNSVersion is the release of the cluster DNS image.
	CoreDNSVersion string `json:"coreDNSVersion,omitempty"`
	// GoVersion is the Go toolchain that built the binaries.
	GoVersion string `json:"goVersion"`
	// BuiltAt is when the installation finished.
	BuiltAt time.Time `json:"builtAt"`
	// BuildDuration is how long the build took.
	BuildDuration Duration `json:"buildDuration"`

	// Dir is where the installation lives.
	Dir string `json:"-"`
}

// Current reports whether the installation was built the way this ephemera
// builds; an older one must be reinstalled before clusters can use it.
func (i *Installation) Current() bool { return i.Recipe >= buildRecipe }

// Bin returns the path of a component binary.
func (i *Installation) Bin(component string) string {
	return filepath.Join(i.Dir, "bin", component)
}

// imagesDir holds an installation's image archives.
const imagesDir = "images"

// Image returns the path of an image archive (see Images), in `docker save`
// format, which `ctr -n k8s.io images import` imports under PauseImageRef or
// CoreDNSImageRef.
func (i *Installation) Image(name string) string {
	return filepath.Join(i.Dir, imagesDir, imageFile(name))
}

// KwokStages returns the path of the simulator's stage configuration.
func (i *Installation) KwokStages() string {
	return filepath.Join(i.Dir, KwokStagesFile)
}

// Duration marshals as a Go duration string.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Round(time.Second).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Cache is the directory holding installed versions.
type Cache struct {
	// Dir is the cache root.
	Dir string
}

// DefaultCacheDir returns $EPHEMERA_CACHE_DIR or the user's cache dir + /ephemera.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv(CacheDirEnv); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache dir (set %s): %w", CacheDirEnv, err)
	}
	return filepath.Join(d, "ephemera"), nil
}

func (c Cache) versionsDir() string { return filepath.Join(c.Dir, "kube") }

func (c Cache) versionDir(version string) string { return filepath.Join(c.versionsDir(), version) }

// Get returns an installed version, or an error wrapping ErrNotInstalled
// that names the command which installs it.
func (c Cache) Get(version string) (*Installation, error) {
	if err := ValidateVersion(version); err != nil {
		return nil, err
	}
	inst, err := readManifest(c.versionDir(version))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s (run: ephemera kube install --version %s)", ErrNotInstalled, version, version)
	}
	if err == nil && !inst.Current() {
		return nil, fmt.Errorf("%w: %s was built by an older ephemera (run: ephemera kube install --version %s)", ErrNotInstalled, version, version)
	}
	return inst, err
}

// List returns every installed version, newest first, including ones built
// by an older ephemera (see Installation.Current).
func (c Cache) List() ([]Installation, error) {
	entries, err := os.ReadDir(c.versionsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list installed versions: %w", err)
	}
	var out []Installation
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		inst, err := readManifest(filepath.Join(c.versionsDir(), e.Name()))
		if err != nil {
			continue // not a finished installation
		}
		out = append(out, *inst)
	}
	sort.Slice(out, func(a, b int) bool { return compareVersions(out[a].Version, out[b].Version) > 0 })
	return out, nil
}

func readManifest(dir string) (*Installation, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return nil, err
	}
	var inst Installation
	if err := json.Unmarshal(b, &inst); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, manifestFile), err)
	}
	inst.Dir = dir
	return &inst, nil
}

// compareVersions orders vMAJOR.MINOR.PATCH strings numerically.
func compareVersions(a, b string) int {
	pa, pb := versionParts(a), versionParts(b)
	for i := range pa {
		if pa[i] != pb[i] {
			if pa[i] < pb[i] {
				return -1
			}
			return 1
		}
	}
	return strings.Compare(a, b)
}

func versionParts(v string) [3]int {
	var p [3]int
	_, _ = fmt.Sscanf(v, "v%d.%d.%d", &p[0], &p[1], &p[2]) // what does not parse counts as 0
	return p
}
