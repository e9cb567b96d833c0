package lease

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ephemera-dev/ephemera/internal/server"
)

func TestWriteKubeconfig(t *testing.T) {
	dir := t.TempDir()
	path := server.NewLayout(dir).LeaseKubeconfig("default", "ci-abcde")
	for _, content := range []string{"first", "second"} { // the second overwrites
		got, err := WriteKubeconfig(path, []byte(content))
		if err != nil {
			t.Fatalf("writeKubeconfig: %v", err)
		}
		if got != path {
			t.Errorf("path = %q, want %q", got, path)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("content = %q, want %q", b, content)
		}
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("dir has %d entries, want only the kubeconfig (no temp files)", len(entries))
	}
}

func TestRemoveKubeconfig(t *testing.T) {
	dir := t.TempDir()
	l := server.NewLayout(dir)
	a, b := l.LeaseKubeconfig("team-a", "a"), l.LeaseKubeconfig("team-a", "b")
	for _, path := range []string{a, b} {
		if _, err := WriteKubeconfig(path, []byte("kc")); err != nil {
			t.Fatal(err)
		}
	}
	if removed, err := RemoveKubeconfig(l, "team-a", "a"); !removed || err != nil {
		t.Fatalf("RemoveKubeconfig(a) = %v, %v; want true, nil", removed, err)
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Errorf("kubeconfig a still there: %v", err)
	}
	if _, err := os.Stat(b); err != nil {
		t.Errorf("kubeconfig b of another TestCluster was removed: %v", err)
	}
	if removed, err := RemoveKubeconfig(l, "team-a", "a"); removed || err != nil {
		t.Errorf("RemoveKubeconfig(a) again = %v, %v; want false, nil", removed, err)
	}
	if removed, err := RemoveKubeconfig(l, "team-a", "b"); !removed || err != nil {
		t.Fatalf("RemoveKubeconfig(b) = %v, %v; want true, nil", removed, err)
	}
	if _, err := os.Stat(filepath.Dir(b)); !os.IsNotExist(err) {
		t.Errorf("empty namespace dir still there: %v", err)
	}
	if _, err := os.Stat(l.LeaseKubeconfigs()); err != nil {
		t.Errorf("kubeconfigs dir removed: %v", err)
	}
}
