package artifact

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignerRoundTrip(t *testing.T) {
	key := []byte(strings.Repeat("k", KeySize))
	s, err := NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	link := s.RunPath("team-a", "e2e", now.Add(time.Hour))
	if !strings.HasPrefix(link, Path+SignedDir+"/1700003600/") || !strings.HasSuffix(link, "/team-a/e2e/") {
		t.Fatalf("link %q", link)
	}
	rest := strings.TrimPrefix(link, Path+SignedDir+"/")
	other, _ := NewSigner([]byte(strings.Repeat("x", KeySize)))
	swap := func(old, repl string) string { return strings.Replace(rest, old, repl, 1) }
	for _, tc := range []struct {
		name   string
		signer *Signer
		rest   string
		now    time.Time
		want   string
		err    error
	}{
		{"the run's dir", s, rest, now, "team-a/e2e/", nil},
		{"a file in it", s, rest + "test.log", now, "team-a/e2e/test.log", nil},
		{"a subdir", s, rest + "junit/", now, "team-a/e2e/junit/", nil},
		{"the dir without its slash", s, strings.TrimSuffix(rest, "/"), now, "team-a/e2e", nil},
		{"a second before expiry", s, rest, now.Add(time.Hour - time.Second), "team-a/e2e/", nil},
		{"at expiry", s, rest, now.Add(time.Hour), "", ErrExpired},
		{"another key", other, rest, now, "", ErrBadSignature},
		{"another run", s, swap("/e2e/", "/other/"), now, "", ErrBadSignature},
		{"another namespace", s, swap("/team-a/", "/team-b/"), now, "", ErrBadSignature},
		{"a later expiry", s, swap("1700003600", "1800003600"), now, "", ErrBadSignature},
		{"out of the run's dir", s, rest + "../other/test.log", now, "", ErrBadSignature},
		{"out of the namespace", s, rest + "../../team-b/x/test.log", now, "", ErrBadSignature},
		{"no signature", s, "1700003600/team-a/e2e/", now, "", ErrMalformed},
		{"a name for a signature", s, "1700003600/team-a/e2e/x/", now, "", ErrBadSignature},
		{"too short", s, "1700003600/abc/team-a", now, "", ErrMalformed},
		{"a bad expiry", s, swap("1700003600", "17e9"), now, "", ErrMalformed},
		{"an expiry with a leading zero", s, swap("1700003600", "01700003600"), now, "", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.signer.Verify(tc.rest, tc.now)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("Verify(%q) = %q, %v; want %q, %v", tc.rest, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestNewSignerShortKey(t *testing.T) {
	if _, err := NewSigner(make([]byte, KeySize-1)); err == nil {
		t.Error("a 31-byte key was accepted")
	}
}
