package kube_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ephemera-dev/ephemera/internal/kube"
)

// writeInstall writes a finished installation of version under dir/kube/name.
func writeInstall(t *testing.T, cacheDir, name, version string) string {
	t.Helper()
	dir := filepath.Join(cacheDir, "kube", name)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	inst := kube.Installation{
		Version:       version,
		Recipe:        kube.BuildRecipe,
		EtcdVersion:   "v3.6.8",
		KwokVersion:   kube.KwokVersion,
		GoVersion:     "go1.26.8",
		BuiltAt:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		BuildDuration: kube.Duration(3*time.Minute + 20*time.Second),
	}
	b, err := json.Marshal(inst)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "install.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCacheGet(t *testing.T) {
	cache := kube.Cache{Dir: t.TempDir()}
	dir := writeInstall(t, cache.Dir, "v1.35.4", "v1.35.4")
	// A directory without a manifest is an unfinished install.
	if err := os.MkdirAll(filepath.Join(cache.Dir, "kube", "v1.34.4", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("installed", func(t *testing.T) {
		inst, err := cache.Get("v1.35.4")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		want := &kube.Installation{
			Recipe:        kube.BuildRecipe,
			Version:       "v1.35.4",
			EtcdVersion:   "v3.6.8",
			KwokVersion:   kube.KwokVersion,
			GoVersion:     "go1.26.8",
			BuiltAt:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			BuildDuration: kube.Duration(3*time.Minute + 20*time.Second),
			Dir:           dir,
		}
		if !reflect.DeepEqual(inst, want) {
			t.Errorf("Get = %+v\nwant %+v", inst, want)
		}
		if got, want := inst.Bin(kube.Etcd), filepath.Join(dir, "bin", "etcd"); got != want {
			t.Errorf("Bin(Etcd) = %s, want %s", got, want)
		}
		if got, want := inst.KwokStages(), filepath.Join(dir, kube.KwokStagesFile); got != want {
			t.Errorf("KwokStages() = %s, want %s", got, want)
		}
		if got, want := inst.Image(kube.CoreDNSImage), filepath.Join(dir, "images", "coredns.tar"); got != want {
			t.Errorf("Image(CoreDNSImage) = %s, want %s", got, want)
		}
	})

	for _, version := range []string{"v1.36.3", "v1.34.4"} {
		t.Run("not installed "+version, func(t *testing.T) {
			inst, err := cache.Get(version)
			if err == nil {
				t.Fatalf("Get(%s) = %+v, want error", version, inst)
			}
			if !errors.Is(err, kube.ErrNotInstalled) {
				t.Errorf("Get(%s) = %v, want it to wrap ErrNotInstalled", version, err)
			}
			if want := "ephemera kube install --version " + version; !strings.Contains(err.Error(), want) {
				t.Errorf("Get(%s) = %q, want it to contain %q", version, err, want)
			}
		})
	}

	t.Run("invalid version", func(t *testing.T) {
		_, err := cache.Get("../v1.35.4")
		if !errors.Is(err, kube.ErrInvalidVersion) {
			t.Errorf("Get(../v1.35.4) = %v, want ErrInvalidVersion", err)
		}
		if errors.Is(err, kube.ErrNotInstalled) {
			t.Errorf("Get(../v1.35.4) = %v, must not claim ErrNotInstalled", err)
		}
	})

	// Recipe 4 is the last one without image archives.
	for _, recipe := range []int{1, 4} {
		t.Run(fmt.Sprintf("older recipe %d", recipe), func(t *testing.T) {
			c := kube.Cache{Dir: t.TempDir()}
			d := filepath.Join(c.Dir, "kube", "v1.36.3")
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "install.json"), []byte(fmt.Sprintf(`{"recipe":%d,"version":"v1.36.3"}`, recipe)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := c.Get("v1.36.3")
			if !errors.Is(err, kube.ErrNotInstalled) || !strings.Contains(err.Error(), "older ephemera") {
				t.Errorf("Get of an installation from an older recipe = %v, want ErrNotInstalled saying so", err)
			}
		})
	}
	t.Run("corrupt manifest", func(t *testing.T) {
		d := filepath.Join(cache.Dir, "kube", "v1.33.13")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "install.json"), []byte("{not json"), 0o644); err != nil {
			t.Fatal(err)
		}
		inst, err := cache.Get("v1.33.13")
		if err == nil {
			t.Fatalf("Get = %+v, want error for a corrupt manifest", inst)
		}
		if !strings.Contains(err.Error(), "install.json") {
			t.Errorf("error %q does not name the manifest", err)
		}
	})
}

func TestCacheGetEmptyCache(t *testing.T) {
	cache := kube.Cache{Dir: filepath.Join(t.TempDir(), "does-not-exist")}
	_, err := cache.Get(kube.DefaultVersion)
	if !errors.Is(err, kube.ErrNotInstalled) {
		t.Errorf("Get on a missing cache dir = %v, want ErrNotInstalled", err)
	}
}

func TestCacheList(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string
	}{
		{
			name:  "missing cache dir",
			setup: func(t *testing.T, dir string) {},
		},
		{
			name: "empty kube dir",
			setup: func(t *testing.T, dir string) {
				if err := os.MkdirAll(filepath.Join(dir, "kube"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "newest first, numerically",
			setup: func(t *testing.T, dir string) {
				for _, v := range []string{"v1.33.13", "v1.36.9", "v1.35.4", "v1.36.10", "v1.34.4"} {
					writeInstall(t, dir, v, v)
				}
			},
			want: []string{"v1.36.10", "v1.36.9", "v1.35.4", "v1.34.4", "v1.33.13"},
		},
		{
			name: "ignores unfinished, hidden and non-directory entries",
			setup: func(t *testing.T, dir string) {
				writeInstall(t, dir, "v1.35.4", "v1.35.4")
				// No manifest: an interrupted install from an older layout.
				if err := os.MkdirAll(filepath.Join(dir, "kube", "v1.34.4", "bin"), 0o755); err != nil {
					t.Fatal(err)
				}
				// A build in progress even has a manifest before its rename.
				writeInstall(t, dir, ".v1.36.3.tmp-123", "v1.36.3")
				// The install lock.
				if err := os.WriteFile(filepath.Join(dir, "kube", ".v1.36.3.lock"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "kube", "v1.33.13"), []byte("{}"), 0o644); err != nil {
					t.Fatal(err)
				}
				// Unreadable manifest.
				if err := os.MkdirAll(filepath.Join(dir, "kube", "v1.36.0"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "kube", "v1.36.0", "install.json"), []byte("{"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"v1.35.4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			list, err := kube.Cache{Dir: dir}.List()
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var got []string
			for _, inst := range list {
				got = append(got, inst.Version)
				if want := filepath.Join(dir, "kube", inst.Version); inst.Dir != want {
					t.Errorf("%s: Dir = %s, want %s", inst.Version, inst.Dir, want)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("List versions = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, `"0s"`},
		{90 * time.Second, `"1m30s"`},
		{3*time.Minute + 20*time.Second + 400*time.Millisecond, `"3m20s"`},
		{time.Hour + 600*time.Millisecond, `"1h0m1s"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			b, err := json.Marshal(kube.Duration(tt.d))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("Marshal(%v) = %s, want %s", tt.d, b, tt.want)
			}
			var back kube.Duration
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			if want := tt.d.Round(time.Second); time.Duration(back) != want {
				t.Errorf("round trip = %v, want %v", time.Duration(back), want)
			}
		})
	}
	// null leaves the string empty, which is not a duration either.
	for _, bad := range []string{`"soon"`, `90`, `null`} {
		var d kube.Duration
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) = %v, want error", bad, time.Duration(d))
		}
	}
}

func TestDefaultCacheDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(kube.CacheDirEnv, dir)
	got, err := kube.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if got != dir {
		t.Errorf("DefaultCacheDir = %s, want %s from $%s", got, dir, kube.CacheDirEnv)
	}

	// A relative override is made absolute.
	t.Chdir(dir)
	t.Setenv(kube.CacheDirEnv, "rel")
	got, err = kube.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "rel"); got != want {
		t.Errorf("DefaultCacheDir with relative $%s = %s, want %s", kube.CacheDirEnv, got, want)
	}

	// Empty means unset: the user cache dir is used.
	t.Setenv(kube.CacheDirEnv, "")
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "xdg"))
	t.Setenv("HOME", dir)
	userCache, err := os.UserCacheDir()
	if err != nil {
		t.Skipf("no user cache dir here: %v", err)
	}
	got, err = kube.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(userCache, "ephemera"); got != want {
		t.Errorf("DefaultCacheDir = %s, want %s", got, want)
	}
}
