package testcluster

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

func TestExpiresAt(t *testing.T) {
	created := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	bound := created.Add(time.Minute)
	d := func(s string) *metav1.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return &metav1.Duration{Duration: v}
	}
	at := func(t time.Time) *metav1.Time { return &metav1.Time{Time: t} }
	for _, tc := range []struct {
		name        string
		spec        v1alpha1.TestClusterSpec
		heartbeat   string
		bound       time.Time
		maxHold     time.Duration
		limits      Limits
		wantFromNow time.Duration // from created
		wantCapped  string
	}{
		{name: "unbound: only maxLifetime", wantFromNow: 72 * time.Hour},
		{name: "unbound custom maxLifetime", spec: v1alpha1.TestClusterSpec{MaxLifetime: d("2h")}, wantFromNow: 2 * time.Hour},
		{name: "default ttl from bind", bound: bound, wantFromNow: time.Minute + time.Hour},
		{name: "ttl from bind", spec: v1alpha1.TestClusterSpec{TTL: d("30m")}, bound: bound, wantFromNow: 31 * time.Minute},
		{name: "heartbeat after bind", spec: v1alpha1.TestClusterSpec{TTL: d("30m")}, bound: bound, heartbeat: created.Add(time.Hour).Format(time.RFC3339), wantFromNow: 90 * time.Minute},
		{name: "heartbeat before bind is ignored", spec: v1alpha1.TestClusterSpec{TTL: d("30m")}, bound: bound, heartbeat: created.Format(time.RFC3339), wantFromNow: 31 * time.Minute},
		{name: "bad heartbeat is ignored", spec: v1alpha1.TestClusterSpec{TTL: d("30m")}, bound: bound, heartbeat: "yesterday", wantFromNow: 31 * time.Minute},
		{name: "hold extends", spec: v1alpha1.TestClusterSpec{TTL: d("30m"), HoldUntil: at(created.Add(3 * time.Hour))}, bound: bound, maxHold: 24 * time.Hour, wantFromNow: 3 * time.Hour},
		{name: "hold shorter than ttl changes nothing", spec: v1alpha1.TestClusterSpec{TTL: d("30m"), HoldUntil: at(created.Add(10 * time.Minute))}, bound: bound, maxHold: 24 * time.Hour, wantFromNow: 31 * time.Minute},
		{name: "hold capped by max hold", spec: v1alpha1.TestClusterSpec{TTL: d("30m"), HoldUntil: at(created.Add(48 * time.Hour))}, bound: bound, maxHold: 2 * time.Hour, wantFromNow: time.Minute + 2*time.Hour, wantCapped: "--max-hold 2h0m0s"},
		{name: "hold capped by maxLifetime", spec: v1alpha1.TestClusterSpec{TTL: d("30m"), MaxLifetime: d("2h"), HoldUntil: at(created.Add(10 * time.Hour))}, bound: bound, maxHold: 24 * time.Hour, wantFromNow: 2 * time.Hour},
		{name: "ttl capped by maxLifetime", spec: v1alpha1.TestClusterSpec{TTL: d("5h"), MaxLifetime: d("1h")}, bound: bound, wantFromNow: time.Hour},
		{name: "ttl of a year capped by the server's max ttl", spec: v1alpha1.TestClusterSpec{TTL: d("8760h")}, bound: bound, wantFromNow: time.Minute + 24*time.Hour, wantCapped: "--max-ttl 24h0m0s"},
		{name: "ttl capped by a lower max ttl", spec: v1alpha1.TestClusterSpec{TTL: d("3h")}, bound: bound, limits: Limits{MaxTTL: time.Hour}, wantFromNow: time.Minute + time.Hour, wantCapped: "--max-ttl 1h0m0s"},
		{name: "heartbeat cannot go past the max ttl", spec: v1alpha1.TestClusterSpec{TTL: d("100h")}, bound: bound, heartbeat: created.Add(time.Hour).Format(time.RFC3339), wantFromNow: 25 * time.Hour, wantCapped: "--max-ttl"},
		{name: "maxLifetime capped by the server's max lifetime", spec: v1alpha1.TestClusterSpec{MaxLifetime: d("1000h")}, wantFromNow: 72 * time.Hour, wantCapped: "--max-lifetime 72h0m0s"},
		{name: "a long ttl and hold still end at the server's max lifetime", spec: v1alpha1.TestClusterSpec{TTL: d("20h"), MaxLifetime: d("1000h"), HoldUntil: at(created.Add(500 * time.Hour))}, bound: bound, heartbeat: created.Add(60 * time.Hour).Format(time.RFC3339), limits: Limits{MaxHold: 100 * time.Hour}, wantFromNow: 72 * time.Hour, wantCapped: "--max-lifetime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := &v1alpha1.TestCluster{Spec: tc.spec}
			obj.CreationTimestamp = metav1.Time{Time: created}
			if tc.heartbeat != "" {
				obj.Annotations = map[string]string{v1alpha1.HeartbeatAnnotation: tc.heartbeat}
			}
			limits := tc.limits
			if tc.maxHold != 0 {
				limits.MaxHold = tc.maxHold
			}
			got, capped := ExpiresAt(obj, tc.bound, limits)
			if want := created.Add(tc.wantFromNow); !got.Equal(want) {
				t.Errorf("ExpiresAt = created + %s, want created + %s", got.Sub(created), tc.wantFromNow)
			}
			msg := strings.Join(capped, "; ")
			if (tc.wantCapped == "") != (msg == "") || !strings.Contains(msg, tc.wantCapped) {
				t.Errorf("capped = %q, want it to name %q", msg, tc.wantCapped)
			}
		})
	}
}
