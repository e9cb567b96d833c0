package kube

import (
	"errors"
	"strings"
	"testing"
)

func TestMinor(t *testing.T) {
	tests := []struct {
		version   string
		wantMinor int
		wantErr   string // substring; "" means valid
	}{
		{version: "v1.36.3", wantMinor: 36},
		{version: "v1.36.0", wantMinor: 36},
		{version: "v1.35.4", wantMinor: 35},
		{version: "v1.34.4", wantMinor: 34},
		{version: "v1.33.0", wantMinor: 33},
		{version: "v1.33.13", wantMinor: 33},
		{version: "v1.36.100", wantMinor: 36},
		{version: "v1.32.9", wantErr: "supported minors are v1.33 to v1.36"},
		{version: "v1.37.0", wantErr: "supported minors are v1.33 to v1.36"},
		{version: "v1.0.0", wantErr: "supported minors"},
		{version: "v1.99999999999999999999.0", wantErr: "supported minors"},
		{version: "1.36.3", wantErr: "want a release like v1.36.3"},
		{version: "v1.36", wantErr: "want a release like"},
		{version: "latest", wantErr: "want a release like"},
		{version: "v2.0.0", wantErr: "want a release like"},
		{version: "", wantErr: "want a release like"},
		{version: "v1.36.3-rc.1", wantErr: "want a release like"},
		{version: "v1.36.3+build", wantErr: "want a release like"},
		{version: " v1.36.3", wantErr: "want a release like"},
		{version: "v1.36.3\n", wantErr: "want a release like"},
		{version: "V1.36.3", wantErr: "want a release like"},
		{version: "v1.36.x", wantErr: "want a release like"},
		{version: "v1.36.3/../../etc", wantErr: "want a release like"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			minor, err := Minor(tt.version)
			verr := ValidateVersion(tt.version)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Minor(%q): %v", tt.version, err)
				}
				if minor != tt.wantMinor {
					t.Errorf("Minor(%q) = %d, want %d", tt.version, minor, tt.wantMinor)
				}
				if verr != nil {
					t.Errorf("ValidateVersion(%q): %v", tt.version, verr)
				}
				return
			}
			for name, err := range map[string]error{"Minor": err, "ValidateVersion": verr} {
				if err == nil {
					t.Errorf("%s(%q): want error, got nil", name, tt.version)
					continue
				}
				if !errors.Is(err, ErrInvalidVersion) {
					t.Errorf("%s(%q) = %v, want it to wrap ErrInvalidVersion", name, tt.version, err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("%s(%q) = %q, want it to contain %q", name, tt.version, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "known: [v1.36.3") {
					t.Errorf("%s(%q) = %q, want it to list the known versions", name, tt.version, err)
				}
			}
			if minor != 0 {
				t.Errorf("Minor(%q) = %d along with an error, want 0", tt.version, minor)
			}
		})
	}
}

func TestKnownVersionsAreValidAndOrdered(t *testing.T) {
	if KnownVersions[0] != DefaultVersion {
		t.Errorf("KnownVersions[0] = %s, want DefaultVersion %s first", KnownVersions[0], DefaultVersion)
	}
	for i, v := range KnownVersions {
		if err := ValidateVersion(v); err != nil {
			t.Errorf("known version %s is invalid: %v", v, err)
		}
		if i > 0 && compareVersions(KnownVersions[i-1], v) <= 0 {
			t.Errorf("KnownVersions not newest first: %s before %s", KnownVersions[i-1], v)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"v1.36.10", "v1.36.9", 1},
		{"v1.36.9", "v1.36.10", -1},
		{"v1.36.3", "v1.36.3", 0},
		{"v1.36.0", "v1.35.99", 1},
		{"v1.9.0", "v1.10.0", -1},
		{"v1.100.0", "v1.99.0", 1},
		{"v2.0.0", "v1.99.99", 1},
		{"v1.33.13", "v1.33.2", 1},
		// Unparsable parts count as 0; ties fall back to string order.
		{"v1.36.3", "garbage", 1},
	}
	for _, tt := range tests {
		t.Run(tt.a+" vs "+tt.b, func(t *testing.T) {
			if got := compareVersions(tt.a, tt.b); got != tt.want {
				t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := compareVersions(tt.b, tt.a); got != -tt.want {
				t.Errorf("compareVersions(%q, %q) = %d, want %d (antisymmetric)", tt.b, tt.a, got, -tt.want)
			}
		})
	}
}
