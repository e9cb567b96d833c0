package registry

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A cluster created with --insecure-registry HOST pulls HOST through the
// cache under /insecure, which lets the cache reach HOST over plain HTTP.
// Every cluster reaches the daemon, so the daemon allows that only for the
// hosts some cluster named (AllowInsecure records them in DIR/insecure.d)
// and those of the settings: no pod can turn another registry's pulls into
// plain HTTP.

// insecureDir holds one empty file per host a cluster named insecure.
const insecureDir = "insecure.d"

// AllowInsecure records that a cluster named host (HOST:PORT) insecure.
func AllowInsecure(dir, host string) error {
	if host == "" || strings.ContainsAny(host, "/\\") || host == "." || host == ".." {
		return fmt.Errorf("insecure registry %q: not HOST:PORT", host)
	}
	d := filepath.Join(dir, insecureDir)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, host), nil, 0o644)
}

// insecureAllowed returns whether ns may be reached over plain HTTP under
// /insecure: in settings, or named by a cluster.
func insecureAllowed(dir string, settings []string) func(ns string) bool {
	return func(ns string) bool {
		if slices.Contains(settings, ns) {
			return true
		}
		if strings.ContainsAny(ns, "/\\") || ns == "." || ns == ".." {
			return false
		}
		_, err := os.Stat(filepath.Join(dir, insecureDir, ns))
		return err == nil
	}
}
