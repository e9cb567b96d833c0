package hold

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
		d    time.Duration
		want string
	}{
		{name: "hold", d: 2 * time.Hour, want: `{"metadata":{"annotations":{"ephemera.dev/heartbeat":"2026-03-01T12:00:05Z"}},"spec":{"holdUntil":"2026-03-01T14:00:05Z"}}`},
		{name: "release", want: `{"metadata":{"annotations":{"ephemera.dev/heartbeat":"2026-03-01T12:00:05Z"}},"spec":{"holdUntil":null}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := patch(now, tt.d)
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
		{opts: options{namespace: "default", hold: time.Hour}},
		{opts: options{namespace: "default"}},
		{opts: options{namespace: "default", hold: -time.Hour}, wantErr: "--for -1h0m0s: must not be negative"},
		{opts: options{hold: time.Hour}, wantErr: "--namespace must not be empty"},
	} {
		err := validate(&tt.opts)
		if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("validate(%+v) = %v, want %q", tt.opts, err, tt.wantErr)
		}
	}
}

func TestHoldLine(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	tc := &v1alpha1.TestCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ci-abcde", CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))},
		Spec:       v1alpha1.TestClusterSpec{MaxLifetime: &metav1.Duration{Duration: 4 * time.Hour}},
	}
	caps := ". Holds are capped by the server's --max-hold and by the TestCluster's maxLifetime; 'ephemera get testclusters ci-abcde -n default' shows when it expires"
	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{name: "within max lifetime", d: 2 * time.Hour, want: "Holding TestCluster default/ci-abcde until " + at(2*time.Hour) + " (in 120m)" + caps},
		{name: "past max lifetime", d: 5 * time.Hour, want: "Holding TestCluster default/ci-abcde until " + at(5*time.Hour) + " (in 5h), but its maxLifetime (4h0m0s since creation) ends it at " + at(3*time.Hour) + " (in 3h)" + caps},
		{name: "release", want: "Released the hold on TestCluster default/ci-abcde; its lease ends ttl after this heartbeat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, holdLine(tc, now, tt.d)); d != "" {
				t.Errorf("holdLine mismatch (-want +got):\n%s", d)
			}
		})
	}
}
