package kube

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// DefaultVersion is the Kubernetes version used when none is given: the
// newest release for which the whole local provider test suite passes.
const DefaultVersion = "v1.36.3"

// KnownVersions are the releases the project is tested with, newest first.
// Other patch releases of the same minors usually work too.
var KnownVersions = []string{"v1.36.3", "v1.35.4", "v1.34.4", "v1.33.13"}

// minMinor and maxMinor bound the Kubernetes minors whose component flags the
// local provider knows.
const (
	minMinor = 33
	maxMinor = 36
)

// ErrInvalidVersion is returned for a version that is not a Kubernetes release
// this project can build.
var ErrInvalidVersion = errors.New("invalid Kubernetes version")

var versionRE = regexp.MustCompile(`^v1\.(0|[1-9]\d*)\.(0|[1-9]\d*)$`)

// Minor returns the minor number of a version like v1.36.3.
func Minor(version string) (int, error) {
	m := versionRE.FindStringSubmatch(version)
	if m == nil {
		return 0, fmt.Errorf("%w %q: want a release like %s (known: %v)", ErrInvalidVersion, version, DefaultVersion, KnownVersions)
	}
	minor, _ := strconv.Atoi(m[1])
	if minor < minMinor || minor > maxMinor {
		return 0, fmt.Errorf("%w %q: supported minors are v1.%d to v1.%d (known: %v)", ErrInvalidVersion, version, minMinor, maxMinor, KnownVersions)
	}
	return minor, nil
}

// ValidateVersion checks that version names a buildable Kubernetes release.
func ValidateVersion(version string) error {
	_, err := Minor(version)
	return err
}
