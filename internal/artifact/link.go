// Package artifact signs and checks the links to TestRun artefacts that
// the server puts on commit statuses.
package artifact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// Path is where the server serves TestRun artefacts: Path + NS/RUN/ for
// those who may get TestRuns in NS, and Path + signed links.
const Path = "/artifacts/"

// SignedDir is the first element of a signed link's path, below Path. No
// namespace has that name (a namespace has no underscore).
const SignedDir = "_signed"

// KeySize is the length of a signing key.
const KeySize = 32

// Errors of Verify, for the server to answer with.
var (
	// ErrMalformed is a path that is not a signed link.
	ErrMalformed = errors.New("not a signed artefacts link")
	// ErrExpired is a signed link past its expiry.
	ErrExpired = errors.New("this artefacts link has expired")
	// ErrBadSignature is a link whose signature does not match.
	ErrBadSignature = errors.New("bad artefacts link signature")
)

// Signer makes and checks signed links. A link reads as
//
//	/artifacts/_signed/EXPIRES/SIG/NS/RUN/FILE...
//
// where EXPIRES is a Unix time in seconds and SIG the hex HMAC-SHA256 of
// NS, RUN and EXPIRES under the key. It grants every file under NS/RUN
// until EXPIRES. The signature sits in the path, not the query, so the
// relative links of a directory listing keep it.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer with key, of KeySize bytes or more.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < KeySize {
		return nil, fmt.Errorf("artefacts link key: %d bytes, want at least %d", len(key), KeySize)
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// RunPath is the path of a signed link to the artefacts dir of the TestRun
// namespace/run, valid until expires.
func (s *Signer) RunPath(namespace, run string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return Path + SignedDir + "/" + exp + "/" + s.sign(namespace, run, exp) + "/" + namespace + "/" + run + "/"
}

// sign is the hex HMAC of a grant. Names hold neither "/" nor a newline,
// so each grant has one message.
func (s *Signer) sign(namespace, run, expires string) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte("ephemera artefacts v1\n" + namespace + "/" + run + "\n" + expires))
	return hex.EncodeToString(mac.Sum(nil))
}

// Verify checks the rest of a signed link's path after Path + SignedDir +
// "/" (EXPIRES/SIG/NS/RUN/...), at now. It returns the path it grants,
// relative to the artefacts root and cleaned (NS/RUN or NS/RUN/FILE...),
// with a trailing slash kept, or ErrMalformed, ErrExpired or
// ErrBadSignature.
func (s *Signer) Verify(rest string, now time.Time) (string, error) {
	parts := strings.SplitN(rest, "/", 5)
	if len(parts) < 4 || parts[2] == "" || parts[3] == "" {
		return "", ErrMalformed
	}
	exp, sig, namespace, run := parts[0], parts[1], parts[2], parts[3]
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || strconv.FormatInt(unix, 10) != exp {
		return "", ErrMalformed
	}
	want := s.sign(namespace, run, exp)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", ErrBadSignature
	}
	if !now.Before(time.Unix(unix, 0)) {
		return "", ErrExpired
	}
	file := ""
	if len(parts) == 5 {
		file = parts[4]
	}
	scope := namespace + "/" + run
	granted := path.Clean(scope + "/" + file)
	if granted != scope && !strings.HasPrefix(granted, scope+"/") {
		// ".." out of the run's dir.
		return "", ErrBadSignature
	}
	if strings.HasSuffix(rest, "/") {
		granted += "/"
	}
	return granted, nil
}
