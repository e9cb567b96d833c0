package extend

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

func TestPatch(t *testing.T) {
	now := time.Date(2026, 3, 1, 13, 0, 5, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		ttl  time.Duration
		want string
	}{
		{name: "heartbeat only", want: `{"metadata":{"annotations":{"ephemera.dev/heartbeat":"2026-03-01T12:00:05Z"}}}`},
		{name: "new ttl", ttl: 90 * time.Minute, want: `{"metadata":{"annotations":{"ephemera.dev/heartbeat":"2026-03-01T12:00:05Z"}},"spec":{"ttl":"1h30m0s"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := patch(now, tt.ttl)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, string(got)); d != "" {
				t.Errorf("patch mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		opts    options
		wantErr string
	}{
		{opts: options{namespace: "default"}},
		{opts: options{namespace: "default", ttl: time.Hour}},
		{opts: options{namespace: "default", ttl: time.Millisecond}, wantErr: "--ttl 1ms: must be at least 1s"},
		{opts: options{namespace: "default", ttl: -time.Hour}, wantErr: "--ttl -1h0m0s: must be at least 1s"},
		{opts: options{ttl: time.Hour}, wantErr: "--namespace must not be empty"},
	} {
		err := validate(&tt.opts)
		if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("validate(%+v) = %v, want %q", tt.opts, err, tt.wantErr)
		}
	}
}

func TestLeaseLine(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	tc := func(created time.Duration, spec v1alpha1.TestClusterSpec) *v1alpha1.TestCluster {
		return &v1alpha1.TestCluster{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ci-abcde", CreationTimestamp: metav1.NewTime(now.Add(created))},
			Spec:       spec,
		}
	}
	d := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	tests := []struct {
		name string
		tc   *v1alpha1.TestCluster
		want string
	}{
		{
			name: "default ttl",
			tc:   tc(-time.Hour, v1alpha1.TestClusterSpec{}),
			want: "Lease of TestCluster default/ci-abcde renewed: it ends " + at(time.Hour) + " (in 60m, ttl 1h0m0s)",
		},
		{
			name: "capped by max lifetime",
			tc:   tc(-time.Hour, v1alpha1.TestClusterSpec{TTL: d(2 * time.Hour), MaxLifetime: d(90 * time.Minute)}),
			want: "Lease of TestCluster default/ci-abcde renewed, but it ends " + at(30*time.Minute) + " (in 30m) at the latest: its maxLifetime 1h30m0s since creation",
		},
		{
			name: "held longer",
			tc:   tc(0, v1alpha1.TestClusterSpec{TTL: d(10 * time.Minute), HoldUntil: &metav1.Time{Time: now.Add(2 * time.Hour)}}),
			want: "Lease of TestCluster default/ci-abcde renewed: it ends " + at(10*time.Minute) + " (in 10m, ttl 10m0s); it is held until " + at(2*time.Hour) + " (in 120m)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, leaseLine(tt.tc, now)); diff != "" {
				t.Errorf("leaseLine mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
